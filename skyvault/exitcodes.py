"""The exit codes of the `skyvault` command, in one place (README.md, "Using it", lists them).

An error carries its code (vaultclient.AgentError.exit_code); a command returns the others.
"""

OK = 0  # the command did what it was asked
FAILURE = 1  # it failed: an error message says why (a backup: its point failed or was not made)
CREDENTIALS = 2  # a credentials file that is missing or not one, or a wrong passphrase
STACK_DEGRADED = 3  # `stack status`: a component of the local stack is not running
PARTIAL = 4  # `backup`: committed, but some files could not be read; `restore`: some could not be written (listed)
PROBLEMS = 5  # `check`: the vault has problems (each is listed; bad copies were reported to the service)
INCOMPLETE = 6  # `check`: no problem found, but some of it could not be checked (a region did not answer)
BUSY = 7  # `retention sweep`: another instance (the timer) is sweeping; nothing was done
INTERRUPTED = 130  # stopped by Ctrl-C (SIGINT), as a shell reports 128 + 2
