"""IVR menus in the object store, per tenant: `{tenant}/_ivr/{menu}.json`.

Audio prompts are keys relative to the tenant's prefix (`{tenant}/{audio}`), so a menu can
only play its own tenant's objects.
"""

from __future__ import annotations

from pipeline.ids import check_id
from pipeline.store import ObjectNotFound, ObjectStore
from tts.ivr.menu import Menu


class MenuNotFound(LookupError):
    """No menu of that name for the tenant."""


class MenuStore:
    """Save and load validated menus of each tenant."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def key(tenant: str, name: str) -> str:
        """Object key of a menu; ValueError for a name that is not a plain identifier."""
        check_id(tenant, "tenant")
        check_id(name, "menu name")
        return f"{tenant}/_ivr/{name}.json"

    def put(self, tenant: str, name: str, menu: Menu) -> None:
        """Store (or replace) a menu that passed validation."""
        self.store.put(self.key(tenant, name), menu.model_dump_json().encode(), "application/json")

    def get(self, tenant: str, name: str) -> Menu:
        """A tenant's menu, or MenuNotFound."""
        try:
            return Menu.model_validate_json(self.store.get(self.key(tenant, name)))
        except ObjectNotFound as exc:
            raise MenuNotFound(f"no menu {name!r}") from exc

    @staticmethod
    def audio_key(tenant: str, audio: str) -> str:
        """Full object key of a menu's audio prompt."""
        return f"{tenant}/{audio}"

    def audio(self, tenant: str, audio: str) -> bytes:
        """The bytes of an audio prompt (ObjectNotFound when it is gone)."""
        return self.store.get(self.audio_key(tenant, audio))

    def audio_exists(self, tenant: str, audio: str) -> bool:
        """Whether an audio prompt's object exists."""
        return self.store.exists(self.audio_key(tenant, audio))
