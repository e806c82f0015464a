"""The benchmark's rclone helpers (`.venv/bin/python -m pytest bench`): no tool is run here."""
from __future__ import annotations

import datetime
from urllib.parse import parse_qs, urlsplit

from bench import tools

ENDPOINT = "http://127.0.0.1:41234/devstoreaccount1"


def test_the_rclone_remote_is_all_in_the_environment():
    env = tools.rclone_env("skyvaultbench", f"{ENDPOINT}?sv=x&sig=y")
    assert env == {"RCLONE_CONFIG_SKYVAULTBENCH_TYPE": "azureblob",
                   "RCLONE_CONFIG_SKYVAULTBENCH_SAS_URL": f"{ENDPOINT}?sv=x&sig=y"}


def test_the_sas_url_names_the_path_style_account_and_lets_rclone_manage_its_container():
    now = datetime.datetime(2026, 12, 4, 12, tzinfo=datetime.timezone.utc)
    url = tools.account_sas_url(ENDPOINT, now=now)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == ENDPOINT
    assert set(query["sp"][0]) == set("rwdlac")
    assert query["srt"] == ["sco"] and query["ss"] == ["b"]
    assert query["se"] == ["2026-12-05T12:00:00Z"]
    assert query["sig"][0]


def test_requests_are_counted_from_rclones_dump_of_each_request():
    def block(method: str) -> str:
        return ("rclone: 2026/12/04 18:18:28 DEBUG : >>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>\n"
                "rclone: 2026/12/04 18:18:28 DEBUG : HTTP REQUEST (req 0xc000936600)\n"
                f"rclone: 2026/12/04 18:18:28 DEBUG : {method} /devstoreaccount1/restic-bench/restic/x?sig=z HTTP/1.1\n"
                "rclone: Host: 127.0.0.1:41234\n")
    output = "".join([block("PUT"), block("PUT"), block("HEAD"),
                      "rclone: 2026/12/04 18:18:28 DEBUG : HTTP RESPONSE (req 0xc000936600)\n", block("GET"),
                      '{"message_type":"summary","snapshot_id":"4572f433"}\n'])
    assert tools.rclone_requests(output) == {"PUT": 2, "HEAD": 1, "GET": 1}
    assert tools.rclone_requests("no requests logged") == {}
