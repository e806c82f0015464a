"""An item's configuration on this machine: the paths it backs up and its exclusions, so a
scheduled `skyvault backup --item NAME` needs no arguments (docs/design.md, "Exclusions and
item configuration").

The state file `item-NAME.json` (skyvault.home: 0600 in the 0700 state folder, written whole
or not at all, never through a link), version 1:
`{"version": 1, "item": NAME, "paths": [absolute paths], "exclusions": {...}}`, the exclusions
as exclude.ExclusionRules.to_doc gives them (`patterns`, `pattern_files` (absolute paths, read
at each backup), `exclude_caches`, `if_present`, `larger_than` (bytes or null),
`one_file_system`, `ignore_case`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.formats import NAME_ID
from skyvault import home
from skyvault.backup.exclude import ExclusionRules
from skyvault.vaultclient import AgentError

VERSION = 1


def file_name(item: str) -> str:
    return f"item-{item}.json"


@dataclass(frozen=True)
class ItemConfig:
    item: str
    paths: tuple[str, ...]
    exclusions: ExclusionRules = ExclusionRules()

    def to_doc(self) -> dict:
        return {"version": VERSION, "item": self.item, "paths": list(self.paths),
                "exclusions": self.exclusions.to_doc()}

    @classmethod
    def from_doc(cls, doc: object, where: str) -> "ItemConfig":
        if not isinstance(doc, dict):
            raise AgentError(f"{where}: an item's configuration must be a JSON object")
        if doc.get("version") != VERSION:
            raise AgentError(f"{where}: version {doc.get('version')!r} is not one this agent reads (it reads "
                             f"{VERSION})")
        item, paths = doc.get("item"), doc.get("paths")
        if not isinstance(item, str) or not NAME_ID.match(item):
            raise AgentError(f"{where}: 'item' must be the item's name")
        if not (isinstance(paths, list) and paths and all(isinstance(p, str) and p.startswith("/") for p in paths)):
            raise AgentError(f"{where}: 'paths' must be a non-empty list of absolute paths")
        return cls(item, tuple(paths), ExclusionRules.from_doc(doc.get("exclusions", {}), where))


def path_of(item: str) -> Path:
    return home.home() / file_name(item)


def load(item: str) -> ItemConfig | None:
    """The item's saved configuration, None if it has none. AgentError names a file this agent
    cannot read, and how to replace it."""
    where = str(path_of(item))
    fix = f"fix it, or run `skyvault backup PATH... --item {item}` to write it again"
    try:
        doc = home.read_optional_json(file_name(item))
    except ValueError as e:  # json's JSONDecodeError, UnicodeDecodeError
        raise AgentError(f"{where} is not an item configuration (not JSON: {e}): {fix}") from None
    except OSError as e:
        raise AgentError(f"cannot read {where}: {e.strerror or e}") from None
    if doc is None:
        return None
    try:
        config = ItemConfig.from_doc(doc, where)
    except AgentError as e:
        raise AgentError(f"{e}: {fix}") from None
    if config.item != item:
        raise AgentError(f"{where} is the configuration of item {config.item!r}, not {item!r}: {fix}")
    return config


def save(config: ItemConfig) -> Path:
    return home.write_json(file_name(config.item), config.to_doc())


def no_configuration(item: str) -> AgentError:
    return AgentError(f"item {item!r} has no saved paths on this machine ({path_of(item)} does not exist): back it "
                      f"up once with its paths, `skyvault backup PATH... --item {item}`, which saves them (and "
                      f"its exclusions) for the backups after")
