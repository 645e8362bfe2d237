"""
Authentication by bearer token and RBAC authorization over the Roles, ClusterRoles and bindings
stored in the emulated cluster, with kube-apiserver's verb mapping and Forbidden wording.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

from . import selectors
from .store import Store

RBAC = 'rbac.authorization.k8s.io'
SUPERUSER_GROUP = 'system:masters'
# Non-resource paths every authenticated user may GET (system:discovery, system:public-info-viewer).
DISCOVERY_PATHS = ('/api', '/api/*', '/apis', '/apis/*', '/openapi/*', '/version', '/version/', '/healthz',
                   '/livez', '/readyz')
PUBLIC_PATHS = ('/version', '/version/', '/healthz', '/livez', '/readyz')


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def all_groups(self) -> tuple[str, ...]:
        if self.name == 'system:anonymous':
            return (*self.groups, 'system:unauthenticated')
        return (*self.groups, 'system:authenticated')


ANONYMOUS = User('system:anonymous')
ADMIN = User('kubernetes-admin', (SUPERUSER_GROUP,))


def service_account_user(namespace: str, name: str) -> User:
    return User(f'system:serviceaccount:{namespace}:{name}',
                ('system:serviceaccounts', f'system:serviceaccounts:{namespace}'))


@dataclasses.dataclass(frozen=True)
class Attributes:
    """authorizer.Attributes: who does which verb to what."""
    user: User
    verb: str
    path: str
    group: str = ''
    resource: str = ''
    subresource: str = ''
    namespace: str = ''
    name: str = ''
    resource_request: bool = False

    def reason(self) -> str:
        """The RBAC denial wording, e.g. `User "u" cannot patch resource "jobs/status" in API group "batch" …`."""
        if not self.resource_request:
            return f'User "{self.user.name}" cannot {self.verb} path "{self.path}"'
        resource = f'{self.resource}/{self.subresource}' if self.subresource else self.resource
        scope = f'in the namespace "{self.namespace}"' if self.namespace else 'at the cluster scope'
        return f'User "{self.user.name}" cannot {self.verb} resource "{resource}" in API group "{self.group}" {scope}'


def _rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    verbs = rule.get('verbs') or []
    if '*' not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.resource_request:
        return any(url == attrs.path or (url.endswith('*') and attrs.path.startswith(url[:-1]))
                   for url in rule.get('nonResourceURLs') or [])
    groups = rule.get('apiGroups') or []
    if '*' not in groups and attrs.group not in groups:
        return False
    combined = f'{attrs.resource}/{attrs.subresource}' if attrs.subresource else attrs.resource
    resources = rule.get('resources') or []
    if not any(r in ('*', combined) or (attrs.subresource and r == f'*/{attrs.subresource}') for r in resources):
        return False
    names = rule.get('resourceNames') or []
    return not names or attrs.name in names


def _subject_matches(subject: Mapping[str, Any], user: User, binding_namespace: str) -> bool:
    kind, name = subject.get('kind'), subject.get('name')
    if kind == 'User':
        return name == user.name
    if kind == 'Group':
        return name in user.all_groups
    if kind == 'ServiceAccount':
        namespace = subject.get('namespace') or binding_namespace
        return user.name == f'system:serviceaccount:{namespace}:{name}'
    return False


class Authorizer:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.tokens: dict[str, User] = {}

    def authenticate(self, authorization: str | None) -> User | None:
        """The user of a request; anonymous without credentials, None for an unknown token (401)."""
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(' ')
        if scheme.lower() != 'bearer':
            return None
        return self.tokens.get(token.strip())

    def _objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self._store.items((RBAC, plural), namespace)

    def _cluster_role_rules(self, name: str) -> list[dict[str, Any]]:
        role = self._store.get((RBAC, 'clusterroles'), '', name)
        if role is None:
            return []
        rules = list(role.get('rules') or [])
        for term in (role.get('aggregationRule') or {}).get('clusterRoleSelectors') or []:
            requirements = selectors.parse_label_selector(selectors.selector_to_string(term))
            rules += [r for other in self._objects('clusterroles')
                      if other is not role and selectors.labels_match(requirements, other['metadata'].get('labels'))
                      for r in other.get('rules') or []]
        return rules

    def _rules(self, user: User, namespace: str) -> Iterable[dict[str, Any]]:
        for binding in self._objects('clusterrolebindings'):
            if any(_subject_matches(s, user, '') for s in binding.get('subjects') or []):
                yield from self._cluster_role_rules(binding['roleRef']['name'])
        if not namespace:
            return
        for binding in self._objects('rolebindings', namespace):
            if not any(_subject_matches(s, user, namespace) for s in binding.get('subjects') or []):
                continue
            ref = binding['roleRef']
            if ref['kind'] == 'ClusterRole':
                yield from self._cluster_role_rules(ref['name'])
            else:
                role = self._store.get((RBAC, 'roles'), namespace, ref['name'])
                yield from (role or {}).get('rules') or []

    def allowed(self, attrs: Attributes) -> bool:
        user = attrs.user
        if SUPERUSER_GROUP in user.groups:
            return True
        if not attrs.resource_request and attrs.verb == 'get':
            public = PUBLIC_PATHS if user == ANONYMOUS else DISCOVERY_PATHS
            if any(fnmatch.fnmatchcase(attrs.path, p) for p in public):
                return True
        if (attrs.resource_request and user != ANONYMOUS and attrs.group == 'authorization.k8s.io'
                and attrs.resource in ('selfsubjectaccessreviews', 'selfsubjectrulesreviews')
                and attrs.verb == 'create'):
            return True  # system:basic-user
        return any(_rule_allows(rule, attrs) for rule in self._rules(user, attrs.namespace))
