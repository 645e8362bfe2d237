"""
Object semantics of kube-apiserver, independent of HTTP: create, update, patch, delete, read,
the status and scale subresources, and what the controllers inside a control plane do with them
(garbage collection by ownerReferences, namespace and CRD cleanup).
"""
from __future__ import annotations

import base64
import copy
import datetime
import json
import random
import uuid
from collections.abc import Mapping
from typing import Any

import yaml

from . import builtin_schemas, builtins, cel, crds, errors, patching, schema, selectors
from .errors import FieldError
from .resources import ResourceType, jsonpath, set_path
from .store import Store

CRD_KEY = ('apiextensions.k8s.io', 'customresourcedefinitions')
NAMESPACES_KEY = ('', 'namespaces')
SYSTEM_NAMESPACES = ('default', 'kube-system', 'kube-public', 'kube-node-lease')
MERGE_PATCH = 'application/merge-patch+json'
JSON_PATCH = 'application/json-patch+json'
STRATEGIC_PATCH = 'application/strategic-merge-patch+json'
APPLY_PATCH = 'application/apply-patch+yaml'
# Metadata that only the server sets; an update keeps the stored values.
SYSTEM_META = ('uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation',
               'namespace', 'name')
# Kinds whose DELETE answers with the deleted object rather than a Status (ReturnDeletedObject).
RETURNS_DELETED = {('', 'pods'), ('', 'serviceaccounts')}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def _random_suffix() -> str:
    return ''.join(random.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(5))


def _without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


class Cluster:
    def __init__(self, *, history: int = 100_000, feature_gates: Mapping[str, bool] | None = None) -> None:
        unknown = set(feature_gates or {}) - set(builtins.FEATURE_GATES)
        if unknown:
            raise ValueError(f'unrecognized feature gates: {", ".join(sorted(unknown))}')
        self.feature_gates = {**builtins.FEATURE_GATES, **(feature_gates or {})}
        self.registry = crds.Registry()
        self.store = Store(history=history)
        for name in SYSTEM_NAMESPACES:
            self.create(self._type(NAMESPACES_KEY), '', {'apiVersion': 'v1', 'kind': 'Namespace',
                                                         'metadata': {'name': name}})
        # Nothing for the controllers to do yet: no timer is pending when a test starts (looptime-safe).
        self.store.written.clear()

    # Reading -------------------------------------------------------------------------------

    def present(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """A stored object as read through a resource version (apiVersion follows the URL)."""
        return {'apiVersion': rt.api_version, 'kind': rt.kind, **copy.deepcopy(_without(obj, 'apiVersion', 'kind'))}

    def existing(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.store.get(rt.key, namespace if rt.namespaced else '', name)
        if obj is None:
            raise errors.not_found(rt.group, rt.plural, name)
        return obj

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        return self.present(rt, self.existing(rt, namespace, name))

    def select(self, rt: ResourceType, namespace: str | None, label_selector: str = '',
               field_selector: str = '') -> list[dict[str, Any]]:
        labels = selectors.parse_label_selector(label_selector) if label_selector else []
        fields = selectors.parse_field_selector(field_selector, rt.field_labels) if field_selector else []
        return [obj for obj in self.store.items(rt.key, namespace)
                if selectors.labels_match(labels, obj['metadata'].get('labels'))
                and selectors.fields_match(fields, obj, rt.field_labels)]

    def list_objects(self, rt: ResourceType, namespace: str | None, label_selector: str = '', field_selector: str = '',
             limit: int = 0, continue_token: str = '') -> dict[str, Any]:
        """A List, in etcd key order, paginated by limit/continue like the real server."""
        items = self.select(rt, namespace, label_selector, field_selector)
        rv = str(self.store.rv)
        if continue_token:
            try:
                state = json.loads(base64.b64decode(continue_token))
                start, rv = state['start'], state['rv']
            except (ValueError, KeyError) as e:
                raise errors.bad_request('continue key is not valid: incorrect encoded start resourceVersion '
                                         '(version meta.k8s.io/v1)') from e
            items = [o for o in items if (o['metadata'].get('namespace', ''), o['metadata']['name']) > tuple(start)]
        meta: dict[str, Any] = {'resourceVersion': rv}
        if limit and len(items) > limit:
            last = items[limit - 1]['metadata']
            token = {'rv': rv, 'start': [last.get('namespace', ''), last['name']]}
            meta['continue'] = base64.b64encode(json.dumps(token).encode()).decode()
            meta['remainingItemCount'] = len(items) - limit
            items = items[:limit]
        presented = [self.present(rt, o) for o in items]
        if not rt.custom:  # built-in lists carry no apiVersion/kind on items
            presented = [_without(o, 'apiVersion', 'kind') for o in presented]
        return {'apiVersion': rt.api_version, 'kind': f'{rt.kind}List', 'metadata': meta, 'items': presented}

    # Decoding --------------------------------------------------------------------------------

    def decode(self, rt: ResourceType, body: Any) -> dict[str, Any]:
        """The checks of decoding a request body into the resource's kind."""
        if not isinstance(body, dict):
            raise errors.bad_request(f'json: cannot unmarshal {schema.json_type(body)} into Go value of type '
                                     f'struct {{ APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string '
                                     f'"json:\\"kind,omitempty\\"" }}')
        text = json.dumps(body, separators=(',', ':'))
        if not rt.custom:  # typed decoding defaults them from the URL (kopf posts Events without them)
            body = {'apiVersion': rt.api_version, 'kind': rt.kind, **body}
        if not body.get('kind'):
            raise errors.bad_request(f"Object 'Kind' is missing in '{text}'")
        if not body.get('apiVersion'):
            raise errors.bad_request(f"Object 'apiVersion' is missing in '{text}'")
        if body['apiVersion'] != rt.api_version:
            raise errors.bad_request(f'the API version in the data ({body["apiVersion"]}) does not match the '
                                     f'expected API version ({rt.api_version})')
        if body['kind'] != rt.kind:
            raise errors.bad_request(f'the kind in the data ({body["kind"]}) does not match the expected kind '
                                     f'({rt.kind})')
        obj: dict[str, Any] = copy.deepcopy(body)
        if not isinstance(obj.setdefault('metadata', {}), dict):
            raise errors.bad_request('metadata: expected an object')
        return obj

    def _prune(self, rt: ResourceType, obj: dict[str, Any], validation: str, warnings: list[str]) -> list[str]:
        """Drop unknown fields; under Warn say so, under Strict return them for the caller to reject."""
        if rt.custom:
            dropped = schema.prune(obj, rt.schema)
        else:  # typed decoding: what the kind's Go struct has no field for
            dropped = builtin_schemas.prune(rt.group, rt.version, rt.kind, obj)
        if validation == 'Warn':
            warnings += [f'unknown field "{path}"' for path in dropped]
        return dropped if validation == 'Strict' else []

    @staticmethod
    def _strict_text(dropped: list[str]) -> str:
        return 'strict decoding error: ' + ', '.join(f'unknown field "{p}"' for p in dropped)

    def _strict_body_error(self, rt: ResourceType, dropped: list[str]) -> errors.ApiError:
        return errors.bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                                  + self._strict_text(dropped))

    # Validation ------------------------------------------------------------------------------

    def validate(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
        strategy = builtins.strategy_for(rt)
        errs = builtins.validate_object_meta(obj['metadata'], strategy.name_errors)
        if old is not None and old['metadata'].get('deletionTimestamp'):
            added = [f for f in obj['metadata'].get('finalizers') or []
                     if f not in (old['metadata'].get('finalizers') or [])]
            if added:
                errs.append(errors.forbidden('metadata.finalizers', 'no new finalizers can be added if the object '
                                             'is being deleted, found new finalizers []string{'
                                             + ', '.join(json.dumps(f) for f in added) + '}'))
        if rt.custom:
            found = schema.validate(_without(obj, 'metadata'), rt.schema, '') + self._scale_errors(rt, obj)
            # hasBlockingErr as 1.28 has it (kubernetes#108859): an enum error (NotSupported) does not block the CEL
            # rules. A later release added NotSupported to the list; which one is not pinned here.
            blocking = {'FieldValueRequired', 'FieldValueTooLong', 'FieldValueTooMany', 'FieldValueTypeInvalid'}
            if any(e.type in blocking for e in found) and cel.has_rules(rt.schema):
                found.append(errors.invalid('<nil>', None, 'some validation rules were not checked because the '
                                            'object was invalid; correct the existing errors to complete validation'))
            else:
                found += cel.validate(obj, old, old is not None, rt.schema)
            errs += found
        elif strategy.validate is not None:
            errs += strategy.validate(obj, old)
        if rt.key == CRD_KEY:
            errs += crds.validate_crd(obj)
        return errs

    def _scale_errors(self, rt: ResourceType, obj: dict[str, Any]) -> list[FieldError]:
        if rt.scale is None:
            return []
        found = jsonpath(obj, rt.scale.spec_replicas_path)
        if found and (not isinstance(found[0], int) or isinstance(found[0], bool) or found[0] < 0):
            return [errors.invalid(rt.scale.spec_replicas_path, found[0], 'should be a non-negative integer')]
        if found and found[0] > 2**31 - 1:
            return [errors.invalid(rt.scale.spec_replicas_path, found[0], 'should be less than or equal to 2147483647')]
        return []

    def _check(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        errs = self.validate(rt, obj, old)
        if errs:
            raise errors.invalid_object(rt.group, rt.kind, obj['metadata'].get('name', ''), errs)

    # Writing ---------------------------------------------------------------------------------

    def _open_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self.store.get(NAMESPACES_KEY, '', namespace)
        if ns is None:
            raise errors.not_found('', 'namespaces', namespace)
        if ns['metadata'].get('deletionTimestamp'):
            raise errors.forbidden_resource(rt.group, rt.plural, name, f'unable to create new content in namespace '
                                                                     f'{namespace} because it is being terminated')

    def create(self, rt: ResourceType, namespace: str, body: Any, *, dry_run: bool = False,
               validation: str = 'Warn', warnings: list[str] | None = None) -> dict[str, Any]:
        warnings = [] if warnings is None else warnings
        crd = self.store.get(CRD_KEY, '', rt.crd) if rt.crd else None
        if crd is not None and crd['metadata'].get('deletionTimestamp'):
            raise errors.ApiError(405, 'MethodNotAllowed',
                                  'create not allowed while custom resource definition is terminating', {})
        obj = self.decode(rt, body)
        dropped = self._prune(rt, obj, validation, warnings)
        if dropped:
            raise self._strict_body_error(rt, dropped)
        meta = obj['metadata']
        if rt.namespaced:
            if meta.get('namespace') and meta['namespace'] != namespace:
                raise errors.bad_request('the namespace of the provided object does not match the namespace sent '
                                         'on the request')
            meta['namespace'] = namespace
            self._open_namespace(rt, namespace, meta.get('name', ''))  # admission runs before validation
        else:
            meta.pop('namespace', None)
        if not meta.get('name') and meta.get('generateName'):
            meta['name'] = meta['generateName'] + _random_suffix()
        if meta.get('resourceVersion'):
            raise errors.internal('resourceVersion should not be set on objects to be created')
        for field in ('deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink', 'managedFields'):
            meta.pop(field, None)
        meta['uid'] = str(uuid.uuid4())
        meta['creationTimestamp'] = now()
        if rt.generation:
            meta['generation'] = 1
        else:
            meta.pop('generation', None)
        if rt.custom and rt.status:
            obj.pop('status', None)  # create cannot set status when /status exists
        builtins.drop_disabled_fields(rt, obj, None, self.feature_gates)
        self._default(rt, obj)
        strategy = builtins.strategy_for(rt)
        if strategy.on_create is not None and meta.get('name'):
            strategy.on_create(obj)
        if rt.key == CRD_KEY and 'spec' in obj and not crds.validate_crd(obj):
            meta.setdefault('finalizers', []).append(crds.CLEANUP_FINALIZER)
            obj['status'] = crds.established_status(obj)
        self._check(rt, obj, None)
        if self.store.get(rt.key, meta.get('namespace', ''), meta['name']) is not None:
            raise errors.already_exists(rt.group, rt.plural, meta['name'])
        if not dry_run:
            self.store.put(rt.key, obj)
            self._after_write(rt, obj)
        return self.present(rt, obj)

    def _default(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.custom:
            schema.apply_defaults(obj, rt.schema)
        else:
            defaults = builtins.strategy_for(rt).defaults
            if defaults is not None:
                defaults(obj)

    def update(self, rt: ResourceType, namespace: str, name: str, body: Any, *, subresource: str | None = None,
               dry_run: bool = False, validation: str = 'Warn', warnings: list[str] | None = None) -> dict[str, Any]:
        """PUT: a full replacement, optimistic-locked by metadata.resourceVersion when it is set."""
        warnings = [] if warnings is None else warnings
        current = self.existing(rt, namespace, name)
        new = self.decode(rt, body)
        dropped = self._prune(rt, new, validation, warnings)
        if dropped:
            raise self._strict_body_error(rt, dropped)
        self._check_identity(rt, new, namespace, name)
        self._check_preconditions(rt, current, new['metadata'])
        return self.commit(rt, current, new, subresource=subresource, dry_run=dry_run)

    def _check_identity(self, rt: ResourceType, new: dict[str, Any], namespace: str, name: str) -> None:
        meta = new['metadata']
        if meta.get('name') and meta['name'] != name:
            raise errors.bad_request(f'the name of the object ({meta["name"]}) does not match the name on the URL '
                                     f'({name})')
        if rt.namespaced and meta.get('namespace') and meta['namespace'] != namespace:
            raise errors.bad_request('the namespace of the provided object does not match the namespace sent on '
                                     'the request')

    def _check_preconditions(self, rt: ResourceType, current: dict[str, Any], meta: dict[str, Any]) -> None:
        name, stored = current['metadata']['name'], current['metadata']
        if meta.get('uid') and meta['uid'] != stored['uid']:
            raise errors.conflict(rt.group, rt.plural, name, f'Precondition failed: UID in precondition: '
                                                             f'{meta["uid"]}, UID in object meta: {stored["uid"]}')
        if meta.get('resourceVersion') and meta['resourceVersion'] != stored['resourceVersion']:
            raise errors.conflict(rt.group, rt.plural, name)

    def commit(self, rt: ResourceType, current: dict[str, Any], new: dict[str, Any], *,
               subresource: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """The common tail of PUT, PATCH and /scale writes: strategies, validation, storage."""
        strategy = builtins.strategy_for(rt)
        if subresource == 'status':
            new = self._status_only(strategy, current, new)
        elif rt.status:
            new = {k: v for k, v in new.items() if k != 'status'}
            if 'status' in current:
                new['status'] = copy.deepcopy(current['status'])
        meta, stored = new['metadata'], current['metadata']
        for field in SYSTEM_META:
            if field in stored:
                meta[field] = stored[field]
            else:
                meta.pop(field, None)
        meta['resourceVersion'] = stored['resourceVersion']
        meta.pop('managedFields', None)
        if subresource is None:
            builtins.drop_disabled_fields(rt, new, current, self.feature_gates)
        self._default(rt, new)
        if rt.generation and subresource != 'status' and self._generation_changed(strategy, current, new):
            meta['generation'] = stored.get('generation', 1) + 1
        if rt.key == CRD_KEY and not crds.validate_crd(new):
            new['status'] = crds.established_status(new)
        self._check(rt, new, current)
        if new == current or dry_run:
            return self.present(rt, new)  # a no-op write keeps the resourceVersion and notifies nobody
        if meta.get('deletionTimestamp') and not self._held(new):
            return self.present(rt, self.store.remove(rt.key, new))
        self.store.put(rt.key, new)
        self._after_write(rt, new)
        return self.present(rt, new)

    @staticmethod
    def _status_only(strategy: builtins.Strategy, current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """What a /status write may change: only status for custom resources; all but spec (…) for built-ins."""
        if '*' in strategy.status_update_keeps:
            result = copy.deepcopy(current)
            if 'status' in new:
                result['status'] = new['status']
            else:
                result.pop('status', None)
            return result
        result = copy.deepcopy(new)
        for path in strategy.status_update_keeps:
            *parents, last = path.split('.')
            source, target = current, result
            for part in parents:
                source, target = source.get(part, {}), target.setdefault(part, {})
            if last in source:
                target[last] = copy.deepcopy(source[last])
            else:
                target.pop(last, None)
        return result

    @staticmethod
    def _generation_changed(strategy: builtins.Strategy, old: dict[str, Any], new: dict[str, Any]) -> bool:
        if '*' in strategy.generation_keys:
            return _without(old, 'metadata') != _without(new, 'metadata')
        return any(jsonpath(old, '.' + path) != jsonpath(new, '.' + path) for path in strategy.generation_keys)

    @staticmethod
    def _held(obj: dict[str, Any]) -> bool:
        """Whether finalizers (or a namespace's spec.finalizers) keep a deleted object in storage."""
        spec_finalizers = obj.get('kind') == 'Namespace' and (obj.get('spec') or {}).get('finalizers')
        return bool(obj['metadata'].get('finalizers') or spec_finalizers)

    def _after_write(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.key == CRD_KEY and not obj['metadata'].get('deletionTimestamp'):
            self.registry.add_crd(obj)

    # Patching --------------------------------------------------------------------------------

    @staticmethod
    def patch_types(rt: ResourceType) -> list[str]:
        if rt.custom:
            return [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
        return [JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH]

    def patch(self, rt: ResourceType, namespace: str, name: str, content_type: str, raw: bytes, *,
              subresource: str | None = None, dry_run: bool = False, validation: str = 'Warn',
              field_manager: str = '', warnings: list[str] | None = None) -> dict[str, Any]:
        warnings = [] if warnings is None else warnings
        accepted = [] if subresource == 'scale' else self.patch_types(rt)
        if accepted and content_type not in accepted:
            raise errors.unsupported_media_type(accepted)
        try:
            body = yaml.safe_load(raw) if content_type == APPLY_PATCH else json.loads(raw or b'null')
        except (ValueError, yaml.YAMLError) as e:
            raise errors.bad_request(f'error decoding patch: {e}') from e
        if content_type == APPLY_PATCH:
            if not field_manager:
                raise errors.ApiError(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required '
                                                      'value: is required for apply patch')
            if self.store.get(rt.key, namespace if rt.namespaced else '', name) is None and subresource is None:
                return self.create(rt, namespace, body, dry_run=dry_run, validation=validation, warnings=warnings)
        current = self.existing(rt, namespace, name)
        if subresource == 'scale':
            patched = self._apply_patch(content_type, self.scale(rt, current), body, rt)
            return self.write_scale(rt, current, patched, dry_run=dry_run)
        patched = self._apply_patch(content_type, self.present(rt, current), body, rt)
        if not isinstance(patched, dict):
            raise errors.bad_request('the patch did not produce an object')
        self._check_identity(rt, patched, namespace, name)
        self._check_preconditions(rt, current, patched.get('metadata') or {})
        new = self.decode(rt, patched)
        dropped = self._prune(rt, new, validation, warnings)
        if dropped:
            # The bad value is what the handler decoded: the patched JSON, or for a strategic merge patch the
            # patch itself as Go prints a map (%+v).
            shown = (errors.go_map(body) if content_type == STRATEGIC_PATCH
                     else json.dumps(patched, separators=(',', ':')))
            raise errors.invalid_object('', '', '', [errors.invalid('patch', shown, self._strict_text(dropped))])
        return self.commit(rt, current, new, subresource=subresource, dry_run=dry_run)

    @staticmethod
    def _apply_patch(content_type: str, target: dict[str, Any], body: Any, rt: ResourceType) -> Any:
        if content_type == JSON_PATCH:
            return patching.json_patch(target, body)
        if not isinstance(body, dict):
            raise errors.bad_request(f'json: cannot unmarshal {schema.json_type(body)} into Go value of type '
                                     f'map[string]interface {{}}')
        if content_type == STRATEGIC_PATCH or (content_type == APPLY_PATCH and not rt.custom):
            return patching.strategic_merge_patch(target, body)
        return patching.merge_patch(target, body)

    # Scale -----------------------------------------------------------------------------------

    def scale(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The autoscaling/v1 Scale view of an object with a /scale subresource."""
        assert rt.scale is not None
        meta = obj['metadata']
        spec = jsonpath(obj, rt.scale.spec_replicas_path)
        status = jsonpath(obj, rt.scale.status_replicas_path)
        if rt.scale.label_selector_path:
            found = jsonpath(obj, rt.scale.label_selector_path)
            selector = found[0] if found and isinstance(found[0], str) else ''
        else:
            selector = selectors.selector_to_string((obj.get('spec') or {}).get('selector'))
        scale_status: dict[str, Any] = {'replicas': status[0] if status else 0}
        if selector:
            scale_status['selector'] = selector
        return {
            'kind': 'Scale', 'apiVersion': 'autoscaling/v1',
            'metadata': {k: meta[k] for k in ('name', 'namespace', 'uid', 'resourceVersion', 'creationTimestamp')
                         if k in meta},
            'spec': {'replicas': spec[0] if spec else 0},
            'status': scale_status,
        }

    def write_scale(self, rt: ResourceType, current: dict[str, Any], scale: Any, *,
                    dry_run: bool = False) -> dict[str, Any]:
        assert rt.scale is not None
        if not isinstance(scale, dict) or not isinstance(scale.get('spec'), dict):
            raise errors.bad_request('the body of the request is not a Scale')
        name = current['metadata']['name']
        self._check_preconditions(rt, current, scale.get('metadata') or {})
        replicas = scale['spec'].get('replicas', 0)
        if not rt.custom and (not isinstance(replicas, int) or replicas < 0):
            raise errors.invalid_object('autoscaling', 'Scale', name, [
                errors.invalid('spec.replicas', replicas, 'must be greater than or equal to 0')])
        new = copy.deepcopy(current)
        set_path(new, rt.scale.spec_replicas_path, replicas)
        return self.scale(rt, self.commit(rt, current, new, dry_run=dry_run))

    def update_scale(self, rt: ResourceType, namespace: str, name: str, body: Any, *,
                     dry_run: bool = False) -> dict[str, Any]:
        return self.write_scale(rt, self.existing(rt, namespace, name), body, dry_run=dry_run)

    # Deleting --------------------------------------------------------------------------------

    def delete(self, rt: ResourceType, namespace: str, name: str, options: dict[str, Any] | None = None, *,
               dry_run: bool = False, warnings: list[str] | None = None) -> dict[str, Any]:
        """DELETE: immediate without finalizers, else deletionTimestamp and wait for the finalizers."""
        options = options or {}
        warnings = [] if warnings is None else warnings
        current = self.existing(rt, namespace, name)
        self._check_preconditions(rt, current, options.get('preconditions') or {})
        policy = options.get('propagationPolicy')
        if policy is None and options.get('orphanDependents') is not None:
            policy = 'Orphan' if options['orphanDependents'] else 'Background'
        if policy is None and builtins.strategy_for(rt).orphan_by_default:
            policy = 'Orphan'
            warnings.append('child pods are preserved by default when jobs are deleted; set propagationPolicy='
                            'Background to remove them or set propagationPolicy=Orphan to suppress this warning')
        if policy not in (None, 'Orphan', 'Foreground', 'Background'):
            raise errors.invalid_object('meta.k8s.io', 'DeleteOptions', '', [errors.not_supported(
                'propagationPolicy', policy, ['Foreground', 'Background', 'Orphan', 'nil'])])
        new = copy.deepcopy(current)
        meta = new['metadata']
        finalizers = [f for f in meta.get('finalizers') or [] if f not in ('orphan', 'foregroundDeletion')
                      or policy is None]
        if policy == 'Orphan':
            finalizers.append('orphan')
        elif policy == 'Foreground':
            finalizers.append('foregroundDeletion')
        if finalizers:
            meta['finalizers'] = list(dict.fromkeys(finalizers))
        else:
            meta.pop('finalizers', None)
        if self._held(new):
            meta.setdefault('deletionTimestamp', now())
            meta.setdefault('deletionGracePeriodSeconds', 0)
            if rt.key == NAMESPACES_KEY:
                new['status'] = {'phase': 'Terminating'}
            if new != current and not dry_run:
                self.store.put(rt.key, new)
            return self.present(rt, new)
        gone = new if dry_run else self.store.remove(rt.key, new)
        if rt.key == CRD_KEY and not dry_run:
            self.registry.remove_crd(name)
        if rt.key in RETURNS_DELETED:
            return self.present(rt, gone)
        return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success',
                'details': {'name': name, 'group': rt.group, 'kind': rt.plural, 'uid': meta['uid']}}

    def delete_collection(self, rt: ResourceType, namespace: str | None, options: dict[str, Any] | None,
                          label_selector: str = '', field_selector: str = '', *, dry_run: bool = False,
                          warnings: list[str] | None = None) -> dict[str, Any]:
        deleted = []
        for obj in self.select(rt, namespace, label_selector, field_selector):
            meta = obj['metadata']
            self.delete(rt, meta.get('namespace', ''), meta['name'], options, dry_run=dry_run, warnings=warnings)
            deleted.append(self.present(rt, obj))
        return {'apiVersion': rt.api_version, 'kind': f'{rt.kind}List',
                'metadata': {'resourceVersion': str(self.store.rv)}, 'items': deleted}

    # Controllers -------------------------------------------------------------------------------

    def reconcile(self) -> None:
        """One pass of the garbage collector and the namespace/CRD cleanup (writes wake the next pass)."""
        for rt in self._stored_types():
            for obj in list(self.store.items(rt.key)):
                if self.store.get(rt.key, obj['metadata'].get('namespace', ''), obj['metadata']['name']) is obj:
                    self._reconcile_object(rt, obj)

    def _stored_types(self) -> list[ResourceType]:
        seen: dict[tuple[str, str], ResourceType] = {}
        for rt in self.registry.all():
            seen.setdefault(rt.key, rt)
        return list(seen.values())

    def _type(self, key: tuple[str, str]) -> ResourceType:
        return next(rt for rt in self._stored_types() if rt.key == key)

    def _reconcile_object(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj['metadata']
        finalizers = meta.get('finalizers') or []
        if not meta.get('deletionTimestamp'):
            self._collect_orphan(rt, obj)
        elif 'foregroundDeletion' in finalizers:
            if not self._delete_dependents(obj):
                self._drop_finalizer(rt, obj, 'foregroundDeletion')
        elif 'orphan' in finalizers:
            self._orphan_dependents(obj)
            self._drop_finalizer(rt, obj, 'orphan')
        elif rt.key == NAMESPACES_KEY:
            self._empty_namespace(obj)
        elif rt.key == CRD_KEY and crds.CLEANUP_FINALIZER in finalizers:
            self._empty_crd(obj)

    def _dependents(self, owner: dict[str, Any]) -> list[tuple[ResourceType, dict[str, Any]]]:
        uid = owner['metadata']['uid']
        return [(rt, obj) for rt in self._stored_types() for obj in self.store.items(rt.key)
                if any(ref.get('uid') == uid for ref in obj['metadata'].get('ownerReferences') or [])]

    def _delete_dependents(self, owner: dict[str, Any]) -> bool:
        """Foreground deletion: delete the dependents; True while some still block their owner."""
        uid = owner['metadata']['uid']
        blocking = False
        for rt, obj in self._dependents(owner):
            meta = obj['metadata']
            if not meta.get('deletionTimestamp'):
                self.delete(rt, meta.get('namespace', ''), meta['name'], {'propagationPolicy': 'Foreground'})
            blocking |= self.store.get(rt.key, meta.get('namespace', ''), meta['name']) is not None and any(
                r.get('uid') == uid and r.get('blockOwnerDeletion') for r in meta.get('ownerReferences') or [])
        return blocking

    def _orphan_dependents(self, owner: dict[str, Any]) -> None:
        uid = owner['metadata']['uid']
        for rt, obj in self._dependents(owner):
            new = copy.deepcopy(obj)
            refs = [r for r in new['metadata']['ownerReferences'] if r.get('uid') != uid]
            if refs:
                new['metadata']['ownerReferences'] = refs
            else:
                del new['metadata']['ownerReferences']
            self.commit(rt, obj, new)

    def _drop_finalizer(self, rt: ResourceType, obj: dict[str, Any], finalizer: str) -> None:
        new = copy.deepcopy(obj)
        new['metadata']['finalizers'] = [f for f in new['metadata']['finalizers'] if f != finalizer]
        if not new['metadata']['finalizers']:
            del new['metadata']['finalizers']
        self.commit(rt, obj, new)
        if rt.key == CRD_KEY and self.store.get(CRD_KEY, '', obj['metadata']['name']) is None:
            self.registry.remove_crd(obj['metadata']['name'])

    def _delete_all(self, rt: ResourceType, namespace: str | None) -> bool:
        """Delete every object of a resource (in a namespace); True while some remain."""
        remaining = self.store.items(rt.key, namespace)
        for obj in remaining:
            if not obj['metadata'].get('deletionTimestamp'):
                self.delete(rt, obj['metadata'].get('namespace', ''), obj['metadata']['name'],
                            {'propagationPolicy': 'Background'})
        return bool(self.store.items(rt.key, namespace))

    def _empty_namespace(self, namespace: dict[str, Any]) -> None:
        name = namespace['metadata']['name']
        remaining = [self._delete_all(rt, name) for rt in self._stored_types() if rt.namespaced]
        if not any(remaining):
            new = copy.deepcopy(namespace)
            new['spec']['finalizers'] = []
            self.commit(self._type(NAMESPACES_KEY), namespace, new)

    def _empty_crd(self, crd: dict[str, Any]) -> None:
        served = [rt for rt in self._stored_types() if rt.crd == crd['metadata']['name']]
        if not any([self._delete_all(rt, None) for rt in served]):
            self._drop_finalizer(self._type(CRD_KEY), crd, crds.CLEANUP_FINALIZER)

    def _owner_exists(self, dependent: dict[str, Any], ref: dict[str, Any]) -> bool | None:
        """Whether the owner exists; None when its kind is unknown (the dependent is then left alone)."""
        owner_rt = self.registry.by_kind(ref.get('apiVersion', ''), ref.get('kind', ''))
        if owner_rt is None:
            return None
        namespace = dependent['metadata'].get('namespace', '') if owner_rt.namespaced else ''
        owner = self.store.get(owner_rt.key, namespace, ref.get('name', ''))
        return owner is not None and owner['metadata']['uid'] == ref.get('uid')

    def _collect_orphan(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """Background GC: delete a dependent whose owners are all gone; drop references to gone owners."""
        refs = obj['metadata'].get('ownerReferences') or []
        alive = [ref for ref in refs if self._owner_exists(obj, ref) is not False]
        if len(alive) == len(refs):
            return
        meta = obj['metadata']
        if not alive:
            self.delete(rt, meta.get('namespace', ''), meta['name'], {'propagationPolicy': 'Background'})
        else:
            new = copy.deepcopy(obj)
            new['metadata']['ownerReferences'] = alive
            self.commit(rt, obj, new)
