"""What a post is about: the assets it names, each with its span, surface text and method.

See entities/README.md. The interface: ``EntityExtractor`` (built once per process, e.g.
``EntityExtractor.from_settings()``), ``extract(text)`` and ``entities_of_post(raw)`` for the
environment's settings, and ``Entities.to_json()`` for storage.
"""

from entities.assets import Asset, AssetList, AssetListError, load_assets
from entities.extract import EntityConfigError, EntityExtractor, default_extractor, entities_of_post, extract
from entities.mentions import AssetLink, Entities, Mention
from entities.settings import EntitySettings, read_settings

__all__ = [
    "Asset",
    "AssetLink",
    "AssetList",
    "AssetListError",
    "Entities",
    "EntityConfigError",
    "EntityExtractor",
    "EntitySettings",
    "Mention",
    "default_extractor",
    "entities_of_post",
    "extract",
    "load_assets",
    "read_settings",
]
