"""
Built-in kinds: their discovery data, and the parts of their REST strategies that clients see —
defaults, status on create, what bumps generation, validation that commonly bites, and the
default deletion propagation (batch/v1 Jobs orphan their pods unless told otherwise).
"""
from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from . import errors
from .errors import FieldError
from .resources import AGE_COLUMN, BASE_FIELDS, NAME_COLUMN, Column, ResourceType, ScaleSpec, path_getter

_SUBDOMAIN = r'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'
_LABEL = r'[a-z0-9]([-a-z0-9]*[a-z0-9])?'
_QUALIFIED_NAME = r'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'
_LABEL_VALUE = r'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?'


def _pattern_check(max_length: int, regex: str, rule: str, examples: str) -> Callable[[str], list[str]]:
    """One of apimachinery's format validations: a length limit, and a regex explained in words."""
    def problems(value: str) -> list[str]:
        found = [f'must be no more than {max_length} characters'] if len(value) > max_length else []
        if not re.fullmatch(regex, value):
            found.append(f"{rule} (e.g. {examples}, regex used for validation is '{regex}')")
        return found
    return problems


dns_subdomain_errors = _pattern_check(
    253, _SUBDOMAIN, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                     "and must start and end with an alphanumeric character", "'example.com'")
dns_label_errors = _pattern_check(
    63, _LABEL, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                "start and end with an alphanumeric character", "'my-name',  or '123-abc'")
_label_value_errors = _pattern_check(
    63, _LABEL_VALUE, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                      "and must start and end with an alphanumeric character", "'MyValue',  or 'my_value',  or '12345'")
_name_part_errors = _pattern_check(
    63, _QUALIFIED_NAME, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                         "end with an alphanumeric character", "'MyName',  or 'my.name',  or '123-abc'")


def _qualified_name_errors(value: str) -> list[str]:
    prefix, _, name = value.rpartition('/')
    problems = [f'prefix part {p}' for p in dns_subdomain_errors(prefix)] if prefix else []
    if not name:
        return [*problems, 'name part must be non-empty']
    return problems + [p if p.startswith('name part') else f'name part {p}' for p in _name_part_errors(name)]


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errs = []
    for key, value in (labels or {}).items():
        errs += [errors.invalid(path, key, p) for p in _qualified_name_errors(key)]
        errs += [errors.invalid(path, value, p) for p in _label_value_errors(str(value))]
    return errs


def validate_object_meta(meta: dict[str, Any], name_errors: Callable[[str], list[str]]) -> list[FieldError]:
    """ValidateObjectMeta: name (or generateName), labels, annotations, finalizers, ownerReferences."""
    errs: list[FieldError] = []
    name = meta.get('name')
    if not name:
        errs.append(errors.required('metadata.name', 'name or generateName is required'))
    else:
        errs += [errors.invalid('metadata.name', name, p) for p in name_errors(name)]
    errs += validate_labels(meta.get('labels'), 'metadata.labels')
    annotations = meta.get('annotations') or {}
    for key in annotations:
        errs += [errors.invalid('metadata.annotations', key, p) for p in _qualified_name_errors(key)]
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > 256 * 1024:
        errs.append(FieldError('FieldValueTooLong', 'metadata.annotations', '', 'must have at most 262144 bytes'))
    for i, finalizer in enumerate(meta.get('finalizers') or []):
        errs += [errors.invalid(f'metadata.finalizers[{i}]', finalizer, p) for p in _qualified_name_errors(finalizer)]
    for i, ref in enumerate(meta.get('ownerReferences') or []):
        for field in ('apiVersion', 'kind', 'name', 'uid'):
            if not ref.get(field):
                errs.append(errors.invalid(f'metadata.ownerReferences[{i}].{field}', ref.get(field, ''),
                                           f'{field} must not be empty'))
    if sum(bool(ref.get('controller')) for ref in meta.get('ownerReferences') or []) > 1:
        errs.append(errors.invalid('metadata.ownerReferences', meta['ownerReferences'],
                                   'Only one reference can have Controller set to true'))
    return errs


# Strategies -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Strategy:
    """The per-kind behaviour that differs from the generic object semantics."""
    name_errors: Callable[[str], list[str]] = dns_subdomain_errors
    defaults: Callable[[dict[str, Any]], None] | None = None
    on_create: Callable[[dict[str, Any]], None] | None = None  # after uid is set: status, generated labels
    validate: Callable[[dict[str, Any], dict[str, Any] | None], list[FieldError]] | None = None
    generation_keys: tuple[str, ...] = ('spec',)  # what, when changed, bumps metadata.generation
    status_update_keeps: tuple[str, ...] = ('spec',)  # what a /status write cannot change
    orphan_by_default: bool = False


def _pod_spec_defaults(spec: dict[str, Any]) -> None:
    for key, value in (('restartPolicy', 'Always'), ('dnsPolicy', 'ClusterFirst'),
                       ('schedulerName', 'default-scheduler'), ('terminationGracePeriodSeconds', 30),
                       ('securityContext', {}), ('enableServiceLinks', True)):
        spec.setdefault(key, value)
    for container in (spec.get('containers') or []) + (spec.get('initContainers') or []):
        image = container.get('image', '')
        latest = ':' not in image.rpartition('/')[2] or image.endswith(':latest')
        container.setdefault('imagePullPolicy', 'Always' if latest and '@' not in image else 'IfNotPresent')
        container.setdefault('terminationMessagePath', '/dev/termination-log')
        container.setdefault('terminationMessagePolicy', 'File')
        container.setdefault('resources', {})


def _template_defaults(obj: dict[str, Any]) -> None:
    template = obj.get('spec', {}).get('template')
    if isinstance(template, dict):
        _pod_spec_defaults(template.setdefault('spec', {}))


def _validate_pod_spec(spec: Any, path: str, restart_policies: tuple[str, ...]) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [errors.required(path)]
    errs = []
    if not spec.get('containers'):
        errs.append(errors.required(f'{path}.containers'))
    for i, container in enumerate(spec.get('containers') or []):
        for field in ('name', 'image'):
            if not container.get(field):
                errs.append(errors.required(f'{path}.containers[{i}].{field}'))
    if spec.get('restartPolicy') not in restart_policies:
        errs.append(errors.not_supported(f'{path}.restartPolicy', spec.get('restartPolicy'), list(restart_policies)))
    return errs


def _immutable(new: Any, old: Any, path: str) -> list[FieldError]:
    return [] if new == old else [errors.invalid(path, new, 'field is immutable')]


def _selector_matches_template(obj: dict[str, Any]) -> list[FieldError]:
    spec = obj.get('spec') or {}
    selector = spec.get('selector')
    if not selector:
        return [errors.required('spec.selector')]
    labels = ((spec.get('template') or {}).get('metadata') or {}).get('labels') or {}
    wanted = selector.get('matchLabels') or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return [errors.invalid('spec.template.metadata.labels', labels, '`selector` does not match template `labels`')]
    return []


def _validate_workload(restart_policies: tuple[str, ...]) -> Callable[[dict[str, Any], dict[str, Any] | None],
                                                                      list[FieldError]]:
    def check(obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
        spec = obj.get('spec') or {}
        errs = _selector_matches_template(obj)
        template = spec.get('template') or {}
        errs += _validate_pod_spec(template.get('spec'), 'spec.template.spec', restart_policies)
        errs += validate_labels((template.get('metadata') or {}).get('labels'), 'spec.template.metadata.labels')
        if old is not None:
            errs += _immutable(spec.get('selector'), (old.get('spec') or {}).get('selector'), 'spec.selector')
        return errs
    return check


def _job_defaults(job: dict[str, Any]) -> None:
    spec = job.setdefault('spec', {})
    if spec.get('completions') is None and spec.get('parallelism') is None:
        spec['completions'] = 1
    spec.setdefault('parallelism', 1)
    spec.setdefault('backoffLimit', 6)
    spec.setdefault('completionMode', 'NonIndexed')
    spec.setdefault('suspend', False)
    spec.setdefault('podReplacementPolicy', 'TerminatingOrFailed')
    _template_defaults(job)


def _job_on_create(job: dict[str, Any]) -> None:
    """generateSelector: the controller-uid selector and labels, and Job labels from the template."""
    spec, meta = job['spec'], job['metadata']
    template_meta = spec.setdefault('template', {}).setdefault('metadata', {})
    labels = template_meta.setdefault('labels', {})
    if not spec.get('manualSelector'):
        uid, name = meta['uid'], meta['name']
        labels.update({'batch.kubernetes.io/controller-uid': uid, 'batch.kubernetes.io/job-name': name,
                       'controller-uid': uid, 'job-name': name})
        spec.setdefault('selector', {'matchLabels': {'batch.kubernetes.io/controller-uid': uid}})
    if not meta.get('labels'):
        meta['labels'] = dict(labels)  # SetDefaults_Job shares the template's label map
    job['status'] = {}


# Scheduling directives that a suspended Job that never started may change (KEP-2926).
_MUTABLE_WHEN_SUSPENDED = ('nodeSelector', 'tolerations', 'affinity', 'schedulingGates')


def _validate_job(job: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    spec = job.get('spec') or {}
    template = spec.get('template') or {}
    errs = _validate_pod_spec(template.get('spec'), 'spec.template.spec', ('OnFailure', 'Never'))
    errs += validate_labels((template.get('metadata') or {}).get('labels'), 'spec.template.metadata.labels')
    if old is None:
        return errs
    old_spec = old.get('spec') or {}
    errs += _immutable(spec.get('selector'), old_spec.get('selector'), 'spec.selector')
    errs += _immutable(spec.get('completions'), old_spec.get('completions'), 'spec.completions')
    new_t, old_t = copy.deepcopy(template), copy.deepcopy(old_spec.get('template') or {})
    if old_spec.get('suspend') and not (old.get('status') or {}).get('startTime'):
        for t in (new_t, old_t):
            t.get('metadata', {}).pop('labels', None)
            t.get('metadata', {}).pop('annotations', None)
            for field in _MUTABLE_WHEN_SUSPENDED:
                t.get('spec', {}).pop(field, None)
    return errs + _immutable(new_t, old_t, 'spec.template')


def _deployment_defaults(obj: dict[str, Any]) -> None:
    spec = obj.setdefault('spec', {})
    spec.setdefault('replicas', 1)
    spec.setdefault('revisionHistoryLimit', 10)
    spec.setdefault('progressDeadlineSeconds', 600)
    spec.setdefault('strategy', {'type': 'RollingUpdate',
                                 'rollingUpdate': {'maxSurge': '25%', 'maxUnavailable': '25%'}})
    _template_defaults(obj)


def _statefulset_defaults(obj: dict[str, Any]) -> None:
    spec = obj.setdefault('spec', {})
    spec.setdefault('replicas', 1)
    spec.setdefault('podManagementPolicy', 'OrderedReady')
    spec.setdefault('revisionHistoryLimit', 10)
    spec.setdefault('updateStrategy', {'type': 'RollingUpdate', 'rollingUpdate': {'partition': 0}})
    spec.setdefault('persistentVolumeClaimRetentionPolicy', {'whenDeleted': 'Retain', 'whenScaled': 'Retain'})
    _template_defaults(obj)


def _empty_status(obj: dict[str, Any]) -> None:
    obj['status'] = {}


def _pod_on_create(pod: dict[str, Any]) -> None:
    pod['status'] = {'phase': 'Pending', 'qosClass': 'BestEffort'}


# Pod fields that an update may change (ValidatePodUpdate), the rest of spec is immutable.
def _validate_pod(pod: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    errs = _validate_pod_spec(pod.get('spec'), 'spec', ('Always', 'OnFailure', 'Never'))
    if old is not None:
        new_spec, old_spec = copy.deepcopy(pod.get('spec') or {}), copy.deepcopy(old.get('spec') or {})
        for spec in (new_spec, old_spec):
            spec.pop('activeDeadlineSeconds', None)
            spec.pop('tolerations', None)
            for container in spec.get('containers', []) + spec.get('initContainers', []):
                container.pop('image', None)
        if new_spec != old_spec:
            errs.append(errors.forbidden('spec', 'pod updates may not change fields other than '
                                                 '`spec.containers[*].image`,`spec.initContainers[*].image`,'
                                                 '`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions '
                                                 'to existing tolerations),`spec.terminationGracePeriodSeconds` '
                                                 '(allow it to be set to 1 if it was previously negative)'))
    return errs


def _namespace_on_create(ns: dict[str, Any]) -> None:
    ns.setdefault('spec', {})['finalizers'] = ['kubernetes']
    ns['status'] = {'phase': 'Active'}
    ns['metadata'].setdefault('labels', {})['kubernetes.io/metadata.name'] = ns['metadata']['name']


def _validate_event(event: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    involved = (event.get('involvedObject') or {}).get('namespace')
    namespace = event.get('metadata', {}).get('namespace')
    if involved and involved != namespace:
        return [errors.invalid('involvedObject.namespace', involved, 'does not match event.namespace')]
    return []


CUSTOM_RESOURCE = Strategy(generation_keys=('*',), status_update_keeps=('*',))
GENERIC = Strategy(generation_keys=())
STRATEGIES: dict[tuple[str, str], Strategy] = {
    ('', 'namespaces'): Strategy(name_errors=dns_label_errors, on_create=_namespace_on_create, generation_keys=()),
    ('', 'pods'): Strategy(defaults=lambda p: _pod_spec_defaults(p.setdefault('spec', {})), on_create=_pod_on_create,
                           validate=_validate_pod, generation_keys=()),
    ('', 'services'): Strategy(name_errors=dns_label_errors, generation_keys=()),
    ('', 'events'): Strategy(validate=_validate_event, generation_keys=()),
    ('batch', 'jobs'): Strategy(defaults=_job_defaults, on_create=_job_on_create, validate=_validate_job,
                                orphan_by_default=True),
    ('batch', 'cronjobs'): Strategy(on_create=_empty_status),
    ('apps', 'deployments'): Strategy(defaults=_deployment_defaults, on_create=_empty_status,
                                      validate=_validate_workload(('Always',)),
                                      generation_keys=('spec', 'metadata.annotations'),
                                      status_update_keeps=('spec', 'metadata.labels')),
    ('apps', 'statefulsets'): Strategy(defaults=_statefulset_defaults, on_create=_empty_status,
                                       validate=_validate_workload(('Always',))),
    ('apps', 'replicasets'): Strategy(on_create=_empty_status, validate=_validate_workload(('Always',))),
    ('apps', 'daemonsets'): Strategy(on_create=_empty_status, validate=_validate_workload(('Always',))),
    ('apiextensions.k8s.io', 'customresourcedefinitions'): Strategy(),
}


# Feature gates: what each defaults to in the release the emulator follows (1.29+), and the pod specs they touch.
FEATURE_GATES = {'SidecarContainers': True}  # off by default in 1.28, on from 1.29
_POD_SPEC_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ('', 'pods'): ('spec',),
    ('', 'podtemplates'): ('template', 'spec'),
    ('batch', 'jobs'): ('spec', 'template', 'spec'),
    ('batch', 'cronjobs'): ('spec', 'jobTemplate', 'spec', 'template', 'spec'),
    **{('apps', plural): ('spec', 'template', 'spec')
       for plural in ('deployments', 'statefulsets', 'replicasets', 'daemonsets')},
}


def pod_spec(rt: ResourceType, obj: Any) -> dict[str, Any] | None:
    """The pod spec inside an object of a kind that has one (a Pod's own, a workload's template's)."""
    path = _POD_SPEC_PATHS.get(rt.key)
    for part in path or ():
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj if path and isinstance(obj, dict) else None


def _init_restart_policy_used(spec: dict[str, Any] | None) -> bool:
    return any(isinstance(c, dict) and 'restartPolicy' in c for c in (spec or {}).get('initContainers') or [])


def drop_disabled_fields(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None,
                         gates: Mapping[str, bool]) -> None:
    """podutil.DropDisabledPodFields: a field of a disabled feature is dropped silently, unless the old object
    already used it. Without SidecarContainers (1.28's default) that is an init container's restartPolicy."""
    spec = pod_spec(rt, obj)
    if spec is None or gates.get('SidecarContainers', True):
        return
    if old is not None and _init_restart_policy_used(pod_spec(rt, old)):
        return
    for container in spec.get('initContainers') or []:
        if isinstance(container, dict):
            container.pop('restartPolicy', None)


def strategy_for(rt: ResourceType) -> Strategy:
    if rt.custom:
        return CUSTOM_RESOURCE
    return STRATEGIES.get(rt.key, GENERIC)


# Discovery data -------------------------------------------------------------------------------------

def _ready(obj: Mapping[str, Any]) -> str:
    status = obj.get('status') or {}
    return f"{status.get('readyReplicas', 0)}/{(obj.get('spec') or {}).get('replicas', 0)}"


def _job_completions(obj: Mapping[str, Any]) -> str:
    return f"{(obj.get('status') or {}).get('succeeded', 0)}/{(obj.get('spec') or {}).get('completions', 1)}"


def _job_status(obj: Mapping[str, Any]) -> str:
    conditions = {c.get('type'): c.get('status') for c in (obj.get('status') or {}).get('conditions') or []}
    for kind in ('Complete', 'Failed', 'Suspended'):
        if conditions.get(kind) == 'True':
            return kind
    return 'Running'


def _columns(*extra: Column) -> tuple[Column, ...]:
    return (NAME_COLUMN, *extra, AGE_COLUMN)


_FIELDS_POD = {**BASE_FIELDS, **{f: path_getter(f) for f in (
    'spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName', 'spec.hostNetwork',
    'status.phase', 'status.podIP', 'status.nominatedNodeName')}}
_FIELDS_EVENT = {**BASE_FIELDS, **{f: path_getter(f) for f in (
    'involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name', 'involvedObject.uid',
    'involvedObject.apiVersion', 'involvedObject.resourceVersion', 'involvedObject.fieldPath', 'reason',
    'reportingComponent', 'type')}, 'source': path_getter('source.component')}

BUILTINS: tuple[ResourceType, ...] = (
    ResourceType('', 'v1', 'namespaces', 'Namespace', False, ('ns',), status=True, other_subresources=('finalize',),
                 field_labels={**BASE_FIELDS, 'status.phase': path_getter('status.phase')},
                 columns=_columns(Column('Status', compute=lambda o: (o.get('status') or {}).get('phase')))),
    ResourceType('', 'v1', 'pods', 'Pod', True, ('po',), ('all',), status=True, other_subresources=('log',),
                 field_labels=_FIELDS_POD,
                 columns=_columns(Column('Status', compute=lambda o: (o.get('status') or {}).get('phase')))),
    ResourceType('', 'v1', 'events', 'Event', True, ('ev',), field_labels=_FIELDS_EVENT),
    ResourceType('', 'v1', 'configmaps', 'ConfigMap', True, ('cm',)),
    ResourceType('', 'v1', 'secrets', 'Secret', True, field_labels={**BASE_FIELDS, 'type': path_getter('type')}),
    ResourceType('', 'v1', 'serviceaccounts', 'ServiceAccount', True, ('sa',)),
    ResourceType('', 'v1', 'services', 'Service', True, ('svc',), ('all',), status=True),
    ResourceType('', 'v1', 'nodes', 'Node', False, ('no',), status=True),
    ResourceType('events.k8s.io', 'v1', 'events', 'Event', True, ('ev',)),
    ResourceType('batch', 'v1', 'jobs', 'Job', True, (), ('all',), status=True, generation=True,
                 field_labels={**BASE_FIELDS, 'status.successful': path_getter('status.succeeded')},
                 columns=_columns(Column('Status', compute=_job_status),
                                  Column('Completions', compute=_job_completions))),
    ResourceType('batch', 'v1', 'cronjobs', 'CronJob', True, ('cj',), ('all',), status=True, generation=True),
    ResourceType('apps', 'v1', 'deployments', 'Deployment', True, ('deploy',), ('all',), status=True, generation=True,
                 scale=ScaleSpec('.spec.replicas', '.status.replicas'),
                 columns=_columns(Column('Ready', compute=_ready),
                                  Column('Available', type='integer', json_path='.status.availableReplicas'))),
    ResourceType('apps', 'v1', 'statefulsets', 'StatefulSet', True, ('sts',), ('all',), status=True, generation=True,
                 scale=ScaleSpec('.spec.replicas', '.status.replicas'),
                 columns=_columns(Column('Ready', compute=_ready))),
    ResourceType('apps', 'v1', 'replicasets', 'ReplicaSet', True, ('rs',), ('all',), status=True, generation=True,
                 scale=ScaleSpec('.spec.replicas', '.status.replicas')),
    ResourceType('apps', 'v1', 'daemonsets', 'DaemonSet', True, ('ds',), ('all',), status=True, generation=True),
    ResourceType('coordination.k8s.io', 'v1', 'leases', 'Lease', True),
    ResourceType('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', 'CustomResourceDefinition', False,
                 ('crd', 'crds'), ('api-extensions',), status=True, generation=True),
    ResourceType('rbac.authorization.k8s.io', 'v1', 'roles', 'Role', True),
    ResourceType('rbac.authorization.k8s.io', 'v1', 'rolebindings', 'RoleBinding', True),
    ResourceType('rbac.authorization.k8s.io', 'v1', 'clusterroles', 'ClusterRole', False),
    ResourceType('rbac.authorization.k8s.io', 'v1', 'clusterrolebindings', 'ClusterRoleBinding', False),
    ResourceType('authorization.k8s.io', 'v1', 'selfsubjectaccessreviews', 'SelfSubjectAccessReview', False,
                 verbs=('create',)),
)

