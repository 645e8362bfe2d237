"""
CustomResourceDefinitions: what a real server checks before accepting one, the resource types it
serves once established, its status, and the registry of every served resource.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from . import cel, errors, schema
from .builtins import BUILTINS, dns_label_errors
from .errors import FieldError
from .resources import AGE_COLUMN, BASE_FIELDS, NAME_COLUMN, Column, ResourceType, ScaleSpec, path_getter

CLEANUP_FINALIZER = 'customresourcecleanup.apiextensions.k8s.io'


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kube-aware version ordering: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > anything else."""
    match = re.fullmatch(r'v(\d+)(?:(alpha|beta)(\d+))?', version)
    if not match:
        return (0, 0, 0, version)
    major, stage, minor = match.groups()
    return ({None: 3, 'beta': 2, 'alpha': 1}[stage], int(major), int(minor or 0), '')


def validate_crd(crd: dict[str, Any]) -> list[FieldError]:
    spec = crd.get('spec') or {}
    names = spec.get('names') or {}
    group, plural = spec.get('group', ''), names.get('plural', '')
    errs: list[FieldError] = []
    for field in ('group', 'scope'):
        if not spec.get(field):
            errs.append(errors.required(f'spec.{field}'))
    if spec.get('scope') and spec['scope'] not in ('Namespaced', 'Cluster'):
        errs.append(errors.not_supported('spec.scope', spec['scope'], ['Cluster', 'Namespaced']))
    for field in ('plural', 'kind'):
        if not names.get(field):
            errs.append(errors.required(f'spec.names.{field}'))
    if plural and dns_label_errors(plural):
        errs.append(errors.invalid('spec.names.plural', plural, dns_label_errors(plural)[0]))
    if crd['metadata'].get('name') != f'{plural}.{group}':
        errs.append(errors.invalid('metadata.name', crd['metadata'].get('name', ''),
                                   'must be spec.names.plural+"."+spec.group'))
    versions = spec.get('versions') or []
    if sum(bool(v.get('storage')) for v in versions) != 1:
        errs.append(errors.invalid('spec.versions', versions,
                                   'must have exactly one version marked as storage version'))
    for i, version in enumerate(versions):
        errs += _validate_version(version, f'spec.versions[{i}]')
    return errs


def _validate_version(version: dict[str, Any], path: str) -> list[FieldError]:
    openapi = (version.get('schema') or {}).get('openAPIV3Schema')
    if not openapi:
        return [errors.required(f'{path}.schema.openAPIV3Schema', 'schemas are required')]
    errs = schema.structural_errors(openapi, f'{path}.schema.openAPIV3Schema')
    for node_path, node in _nodes_with_rules(openapi, f'{path}.schema.openAPIV3Schema'):
        for j, rule in enumerate(node['x-kubernetes-validations']):
            problem = cel.compile_error(rule.get('rule', ''))
            if problem:
                errs.append(errors.invalid(f'{node_path}.x-kubernetes-validations[{j}].rule', rule.get('rule', ''),
                                           problem))
    scale = (version.get('subresources') or {}).get('scale')
    if scale:
        for field, prefix in (('specReplicasPath', '.spec.'), ('statusReplicasPath', '.status.')):
            value = scale.get(field, '')
            if not value.startswith(prefix):
                errs.append(errors.invalid(f'{path}.subresources.scale.{field}', value,
                                           f'should be a json path under {prefix.rstrip(".")}'))
    for j, column in enumerate(version.get('additionalPrinterColumns') or []):
        for field in ('name', 'type', 'jsonPath'):
            if not column.get(field):
                errs.append(errors.required(f'{path}.additionalPrinterColumns[{j}].{field}'))
    return errs


def _nodes_with_rules(node: dict[str, Any], path: str) -> Iterable[tuple[str, dict[str, Any]]]:
    if node.get('x-kubernetes-validations'):
        yield path, node
    for name, sub in (node.get('properties') or {}).items():
        yield from _nodes_with_rules(sub, f'{path}.properties[{name}]')
    if isinstance(node.get('items'), dict):
        yield from _nodes_with_rules(node['items'], f'{path}.items')
    if isinstance(node.get('additionalProperties'), dict):
        yield from _nodes_with_rules(node['additionalProperties'], f'{path}.additionalProperties')


def established_status(crd: dict[str, Any]) -> dict[str, Any]:
    spec = crd['spec']
    names = dict(spec['names'])
    names.setdefault('singular', names['kind'].lower())
    names.setdefault('listKind', names['kind'] + 'List')
    now = crd['metadata']['creationTimestamp']
    return {
        'acceptedNames': names,
        'conditions': [
            {'type': 'NamesAccepted', 'status': 'True', 'reason': 'NoConflicts', 'message': 'no conflicts found',
             'lastTransitionTime': now},
            {'type': 'Established', 'status': 'True', 'reason': 'InitialNamesAccepted',
             'message': 'the initial names have been accepted', 'lastTransitionTime': now},
        ],
        'storedVersions': sorted({v['name'] for v in spec['versions'] if v.get('storage')}
                                 | set((crd.get('status') or {}).get('storedVersions') or [])),
    }


def resource_types(crd: dict[str, Any]) -> list[ResourceType]:
    spec, names = crd['spec'], crd['spec']['names']
    result = []
    for version in spec['versions']:
        if not version.get('served'):
            continue
        subresources = version.get('subresources') or {}
        scale = subresources.get('scale')
        columns: tuple[Column, ...] = (NAME_COLUMN, AGE_COLUMN)
        if version.get('additionalPrinterColumns'):
            columns = (NAME_COLUMN, *(Column(c['name'], c['type'], json_path=c['jsonPath'],
                                             description=c.get('description', ''), priority=c.get('priority', 0),
                                             format=c.get('format', ''))
                                      for c in version['additionalPrinterColumns']))
        fields = {**BASE_FIELDS, **{f['jsonPath'].lstrip('.'): path_getter(f['jsonPath'])
                                    for f in version.get('selectableFields') or []}}
        result.append(ResourceType(
            spec['group'], version['name'], names['plural'], names['kind'], spec['scope'] == 'Namespaced',
            tuple(names.get('shortNames') or ()), tuple(names.get('categories') or ()),
            status='status' in subresources,
            scale=ScaleSpec(scale['specReplicasPath'], scale['statusReplicasPath'],
                            scale.get('labelSelectorPath')) if scale else None,
            generation=True, schema=version['schema']['openAPIV3Schema'], columns=columns,
            field_labels=fields, crd=crd['metadata']['name'],
        ))
    return result


class Registry:
    """Every served resource type, by (group, version, plural), built-ins first."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rt in BUILTINS:
            self._types[rt.group, rt.version, rt.plural] = rt

    def add_crd(self, crd: dict[str, Any]) -> None:
        self.remove_crd(crd['metadata']['name'])
        for rt in resource_types(crd):
            self._types[rt.group, rt.version, rt.plural] = rt

    def remove_crd(self, name: str) -> None:
        for key in [k for k, rt in self._types.items() if rt.crd == name]:
            del self._types[key]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition('/')
        """The type serving a kind: in that version if served, else in another version of its group."""
        candidates = [rt for rt in self._types.values() if (rt.group, rt.kind) == (group, kind)]
        candidates.sort(key=lambda rt: rt.version != version)
        return candidates[0] if candidates else None

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def group_versions(self) -> dict[str, list[str]]:
        """Served versions of each group, preferred first."""
        groups: dict[str, set[str]] = {}
        for rt in self._types.values():
            groups.setdefault(rt.group, set()).add(rt.version)
        return {g: sorted(vs, key=version_priority, reverse=True) for g, vs in groups.items()}

    def in_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if (rt.group, rt.version) == (group, version)]
