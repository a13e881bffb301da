"""Luigi's configuration files: ``luigi.cfg`` (or ``luigi.toml``) and ``get_config()``.

Read on first use, never at import: ``/etc/luigi/luigi.cfg``, ``luigi.cfg`` in
the working folder, then the file named by ``LUIGI_CONFIG_PATH``; with
``LUIGI_CONFIG_PARSER=toml`` (or a ``LUIGI_CONFIG_PATH`` ending in ``.toml``),
``/etc/luigi/luigi.toml`` and ``luigi.toml`` instead. Values may name
environment variables as ``${NAME}``.

Sections named after task families give parameter defaults
(``[Report] region = eu``), as do sections named after :class:`Config`
classes. ``[core]``, ``[worker]``, ``[scheduler]`` and ``[retcode]`` hold the
settings the shim reads (see the migration guide).
"""

from __future__ import annotations

import configparser
import os
import re
import tomllib
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

from ..errors import ConfigError

__all__ = [
    "LuigiConfigParser",
    "LuigiTomlParser",
    "add_config_path",
    "get_config",
]

_ENV_REFERENCE = re.compile(r"\$\{([^}]+)\}")


class _EnvironmentInterpolation(configparser.BasicInterpolation):
    """``%(name)s`` references as in configparser, plus ``${ENVVAR}``."""

    def before_get(
        self,
        parser: Any,
        section: str,
        option: str,
        value: str,
        defaults: Any,
    ) -> str:
        value = super().before_get(parser, section, option, value, defaults)

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            try:
                return os.environ[name]
            except KeyError:
                raise ConfigError(
                    f"[{section}] {option}: environment variable {name!r} is not set"
                ) from None

        return _ENV_REFERENCE.sub(replace, value)


class _Base:
    """What both parsers share: their files and the process-wide instance."""

    NO_DEFAULT: ClassVar[object] = object()
    _config_paths: ClassVar[list[str]] = []
    _added_paths: ClassVar[list[str]] = []
    _instance: ClassVar[Any] = None

    @classmethod
    def instance(cls) -> Any:
        """The process-wide parser, reading its files the first time."""
        if cls.__dict__.get("_instance") is None:
            cls._instance = cls()
            cls._instance.reload_files()
        return cls._instance

    @classmethod
    def add_config_path(cls, path: str) -> None:
        """Read ``path`` too (after the standard files), now and on reload."""
        if "_added_paths" not in cls.__dict__:
            cls._added_paths = []
        cls._added_paths.append(path)
        if cls.__dict__.get("_instance") is not None:
            cls._instance.reload_files()

    @classmethod
    def reload(cls) -> Any:
        """Read the files again."""
        return cls.instance().reload_files()

    @classmethod
    def _paths(cls) -> list[str]:
        return [*cls._config_paths, *cls.__dict__.get("_added_paths", [])]

    def reload_files(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError


class LuigiConfigParser(_Base, configparser.ConfigParser):
    """``luigi.cfg``: a :class:`configparser.ConfigParser` with Luigi's defaults.

    Option names are case-sensitive; ``get*()`` take a ``default`` returned
    when the option is missing, and accept ``-`` for ``_`` in option names.
    """

    _config_paths: ClassVar[list[str]] = ["/etc/luigi/luigi.cfg", "luigi.cfg"]

    def __init__(self) -> None:
        super().__init__(interpolation=_EnvironmentInterpolation())
        self.optionxform = str  # type: ignore[assignment,method-assign]

    def reload_files(self) -> list[str]:
        for section in self.sections():
            self.remove_section(section)
        try:
            return self.read(self._paths())
        except configparser.Error as exc:
            raise ConfigError(f"Luigi configuration does not parse: {exc}") from None

    def _option(self, section: str, option: str) -> str | None:
        """The spelling of ``option`` present in ``section`` (``_`` or ``-``), if any."""
        for name in (option.replace("-", "_"), option.replace("_", "-")):
            if configparser.ConfigParser.has_option(self, section, name):
                return name
        return None

    def has_option(self, section: str | None, option: str) -> bool:
        return section is not None and self._option(section, option) is not None

    def _lookup(self, method: Any, section: str, option: str, default: Any, **kwargs: Any) -> Any:
        name = self._option(section, option) if self.has_section(section) else None
        if name is None:
            if default is self.NO_DEFAULT:
                if not self.has_section(section):
                    raise configparser.NoSectionError(section)
                raise configparser.NoOptionError(option, section)
            return default
        return method(self, section, name, **kwargs)

    def get(  # type: ignore[override]
        self, section: str, option: str, default: Any = _Base.NO_DEFAULT, **kwargs: Any
    ) -> Any:
        return self._lookup(configparser.ConfigParser.get, section, option, default, **kwargs)

    def getboolean(  # type: ignore[override]
        self, section: str, option: str, default: Any = _Base.NO_DEFAULT
    ) -> Any:
        return self._lookup(configparser.ConfigParser.getboolean, section, option, default)

    def getint(  # type: ignore[override]
        self, section: str, option: str, default: Any = _Base.NO_DEFAULT
    ) -> Any:
        return self._lookup(configparser.ConfigParser.getint, section, option, default)

    def getfloat(  # type: ignore[override]
        self, section: str, option: str, default: Any = _Base.NO_DEFAULT
    ) -> Any:
        return self._lookup(configparser.ConfigParser.getfloat, section, option, default)

    def getintdict(self, section: str) -> dict[str, int]:
        """Every option of ``section`` as an int."""
        if not self.has_section(section):
            return {}
        return {key: int(value) for key, value in self.items(section, raw=False)}

    def set(self, section: str, option: str, value: str | None = None) -> None:
        """Set an option, adding the section if needed."""
        if not self.has_section(section):
            self.add_section(section)
        super().set(section, option, value)

    def section_items(self, section: str) -> Iterator[tuple[str, Any]]:
        """The options of ``section`` (nothing if it is absent)."""
        if self.has_section(section):
            yield from self.items(section)


class LuigiTomlParser(_Base):
    """``luigi.toml``: sections are tables; values keep their TOML types."""

    _config_paths: ClassVar[list[str]] = ["/etc/luigi/luigi.toml", "luigi.toml"]

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def reload_files(self) -> list[str]:
        self.data = {}
        read: list[str] = []
        for path in self._paths():
            if not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as file:
                    loaded = tomllib.load(file)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML: {exc}") from None
            for section, table in loaded.items():
                if isinstance(table, dict):
                    self.data.setdefault(section, {}).update(table)
            read.append(path)
        return read

    def _get(self, section: str, option: str, default: Any) -> Any:
        table = self.data.get(section, {})
        for name in (option.replace("-", "_"), option.replace("_", "-")):
            if name in table:
                return table[name]
        if default is self.NO_DEFAULT:
            raise KeyError(f"[{section}] {option}")
        return default

    def get(self, section: str, option: str, default: Any = _Base.NO_DEFAULT, **_: Any) -> Any:
        return self._get(section, option, default)

    getboolean = getint = getfloat = get

    def getintdict(self, section: str) -> dict[str, int]:
        return {key: int(value) for key, value in self.data.get(section, {}).items()}

    def has_section(self, section: str) -> bool:
        return section in self.data

    def sections(self) -> list[str]:
        return list(self.data)

    def has_option(self, section: str, option: str) -> bool:
        return self._get(section, option, None) is not None

    def set(self, section: str, option: str, value: Any = None) -> None:
        self.data.setdefault(section, {})[option] = value

    def section_items(self, section: str) -> Iterator[tuple[str, Any]]:
        yield from self.data.get(section, {}).items()

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.data[section]


_PARSERS: dict[str, type[_Base]] = {
    "cfg": LuigiConfigParser,
    "conf": LuigiConfigParser,
    "ini": LuigiConfigParser,
    "toml": LuigiTomlParser,
}
_env_path_added: set[tuple[type[_Base], str]] = set()


def _default_parser() -> str:
    name = os.environ.get("LUIGI_CONFIG_PARSER", "")
    if not name:
        path = os.environ.get("LUIGI_CONFIG_PATH", "")
        return "toml" if path.endswith(".toml") else "cfg"
    if name not in _PARSERS:
        warnings.warn(f"LUIGI_CONFIG_PARSER={name!r} is not cfg or toml; using cfg", stacklevel=3)
        return "cfg"
    return name


def get_config(parser: str | None = None) -> Any:
    """The configuration: a :class:`LuigiConfigParser` or a :class:`LuigiTomlParser`.

    The files are read the first time it is asked for (never at import).
    """
    name = parser or _default_parser()
    parser_class = _PARSERS.get(name)
    if parser_class is None:
        raise ConfigError(f"unknown Luigi configuration parser {name!r} (cfg or toml)")
    env_path = os.environ.get("LUIGI_CONFIG_PATH")
    if env_path and (parser_class, env_path) not in _env_path_added:
        _env_path_added.add((parser_class, env_path))
        if os.path.isfile(env_path):
            parser_class.add_config_path(env_path)
        else:
            warnings.warn(f"LUIGI_CONFIG_PATH: no such file: {env_path}", stacklevel=2)
    return parser_class.instance()


def add_config_path(path: str) -> bool:
    """Read ``path`` too; the parser is chosen by its extension. False if it does not exist."""
    if not os.path.isfile(path):
        warnings.warn(f"Config file does not exist: {path}", stacklevel=2)
        return False
    extension = os.path.splitext(path)[1].lstrip(".")
    _PARSERS.get(extension, _PARSERS[_default_parser()]).add_config_path(path)
    return True


def config_value(section: str, option: str) -> Any:
    """One configured value (text for ``luigi.cfg``, typed for TOML), or None."""
    config = get_config()
    if not config.has_option(section, option):
        return None
    return config.get(section, option)
