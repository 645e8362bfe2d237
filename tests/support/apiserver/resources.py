"""
What the emulator knows about each served resource: scope, kind, names, subresources, schema,
printer columns and field labels; plus the JSONPath subset that printer columns and /scale use.
"""
from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any

STANDARD_VERBS = ('create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch')
SUBRESOURCE_VERBS = ('get', 'patch', 'update')


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Values at a kubectl-style JSONPath: `.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.k=="v")].b`."""
    path = path.strip()
    if path.startswith('{') and path.endswith('}'):
        path = path[1:-1]
    nodes = [obj]
    for token in re.findall(r'\.([^.\[]+)|\[([^\]]*)\]', path):
        name, bracket = token
        found: list[Any] = []
        for node in nodes:
            if name:
                if isinstance(node, Mapping) and name in node:
                    found.append(node[name])
            elif isinstance(node, list):
                found.extend(_select(node, bracket))
        nodes = found
    return nodes


def _select(items: list[Any], bracket: str) -> list[Any]:
    if bracket == '*':
        return items
    if re.fullmatch(r'-?\d+', bracket):
        i = int(bracket)
        return [items[i]] if -len(items) <= i < len(items) else []
    match = re.fullmatch(r'\?\(@\.([\w.-]+)\s*(==|!=)\s*["\']?(.*?)["\']?\)', bracket)
    if not match:
        return []
    field, op, value = match.groups()
    chosen = []
    for item in items:
        actual = jsonpath(item, '.' + field)
        equal = bool(actual) and str(actual[0]) == value
        if equal == (op == '=='):
            chosen.append(item)
    return chosen


def set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    """Set a simple `.a.b` path, creating the maps on the way (for /scale's specReplicasPath)."""
    parts = path.lstrip('.').split('.')
    for part in parts[:-1]:
        obj = obj.setdefault(part, {})
    obj[parts[-1]] = value


def human_age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    """duration.HumanDuration, as kube-apiserver renders ages in table cells ("5s", "3m2s", "2d")."""
    if not timestamp:
        return '<unknown>'
    then = datetime.datetime.strptime(timestamp, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.UTC)
    seconds = int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())
    minutes, hours = seconds // 60, seconds // 3600
    if seconds < 0:
        return '0s'
    if seconds < 120:
        return f'{seconds}s'
    if minutes < 10:
        return f'{minutes}m{seconds % 60}s' if seconds % 60 else f'{minutes}m'
    if minutes < 180:
        return f'{minutes}m'
    if hours < 8:
        return f'{hours}h{minutes % 60}m' if minutes % 60 else f'{hours}h'
    if hours < 48:
        return f'{hours}h'
    if hours < 24 * 8:
        return f'{hours // 24}d{hours % 24}h' if hours % 24 else f'{hours // 24}d'
    if hours < 24 * 365 * 2:
        return f'{hours // 24}d'
    return f'{hours // 24 // 365}y'


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column: either a JSONPath (CRD additionalPrinterColumns) or a computed cell."""
    name: str
    type: str = 'string'
    json_path: str | None = None
    compute: Callable[[Mapping[str, Any]], Any] | None = None
    description: str = ''
    priority: int = 0
    format: str = ''

    def cell(self, obj: Mapping[str, Any]) -> Any:
        if self.compute is not None:
            return self.compute(obj)
        values = jsonpath(obj, self.json_path or '')
        if not values:
            return None
        value = values[0]
        if self.type == 'date' and isinstance(value, str):
            return human_age(value)
        if self.type in ('integer', 'number', 'boolean') or isinstance(value, (dict, list)):
            return value
        return str(value)

    def definition(self) -> dict[str, Any]:
        return {'name': self.name, 'type': self.type, 'format': self.format,
                'description': self.description, 'priority': self.priority}


NAME_COLUMN = Column('Name', format='name', compute=lambda o: o.get('metadata', {}).get('name'),
                     description='Name must be unique within a namespace.')
AGE_COLUMN = Column('Age', type='date', compute=lambda o: human_age(o.get('metadata', {}).get('creationTimestamp')),
                    description='CreationTimestamp is a timestamp representing the server time when this object '
                                'was created.')

FieldGetter = Callable[[Mapping[str, Any]], Any]


def path_getter(path: str) -> FieldGetter:
    def get(obj: Mapping[str, Any]) -> Any:
        values = jsonpath(obj, '.' + path.lstrip('.'))
        return values[0] if values else None
    return get


BASE_FIELDS: dict[str, FieldGetter] = {
    'metadata.name': path_getter('metadata.name'),
    'metadata.namespace': path_getter('metadata.namespace'),
}


@dataclasses.dataclass(frozen=True)
class ScaleSpec:
    spec_replicas_path: str
    status_replicas_path: str
    label_selector_path: str | None = None


@dataclasses.dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS
    status: bool = False
    scale: ScaleSpec | None = None
    other_subresources: tuple[str, ...] = ()
    generation: bool = False  # whether metadata.generation is tracked
    schema: dict[str, Any] | None = None  # openAPIV3Schema: custom resources only
    columns: tuple[Column, ...] = (NAME_COLUMN, AGE_COLUMN)
    field_labels: Mapping[str, FieldGetter] = dataclasses.field(default_factory=lambda: BASE_FIELDS)
    crd: str | None = None  # the CRD's name for custom resources

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> tuple[str, str]:
        """Where objects live, whatever the version they are read through."""
        return self.group, self.plural

    @property
    def custom(self) -> bool:
        return self.crd is not None

    @property
    def subresources(self) -> tuple[str, ...]:
        return (('status',) if self.status else ()) + (('scale',) if self.scale else ()) + self.other_subresources

    def discovery(self) -> list[dict[str, Any]]:
        main: dict[str, Any] = {'name': self.plural, 'singularName': self.singular, 'namespaced': self.namespaced,
                                'kind': self.kind, 'verbs': list(self.verbs)}
        if self.short_names:
            main['shortNames'] = list(self.short_names)
        if self.categories:
            main['categories'] = list(self.categories)
        entries = [main]
        for sub in self.subresources:
            entry: dict[str, Any] = {'name': f'{self.plural}/{sub}', 'singularName': '',
                                     'namespaced': self.namespaced, 'kind': self.kind,
                                     'verbs': ['get'] if sub == 'log' else list(SUBRESOURCE_VERBS)}
            if sub == 'scale':
                entry.update(group='autoscaling', version='v1', kind='Scale')
            entries.append(entry)
        return entries
