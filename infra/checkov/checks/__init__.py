# Skyvault's own checkov checks, loaded with --external-checks-dir infra/checkov/checks
# (checkov loads only folders that have an __init__.py).
