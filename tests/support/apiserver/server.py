"""
The HTTP face of the emulator: a kmock handler that routes Kubernetes API requests to the
emulated cluster, with discovery, OpenAPI v2 and v3, tables, watch streams, RBAC, fault injection
and a request log; plus the admin endpoints under /_emulator/.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import re
import secrets
import ssl
import urllib.parse
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, cast

import aiohttp.test_utils
import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import rendering

from . import errors, kubeconfig, openapi, openapi_proto, protobuf, selectors, tls
from .cluster import Cluster
from .control import Fault, RequestRecord
from .rbac import ADMIN, ANONYMOUS, Attributes, Authorizer, User, service_account_user
from .resources import ResourceType
from .store import Change

logger = logging.getLogger(__name__)
SERVER_VERSION = {'major': '1', 'minor': '31', 'gitVersion': 'v1.31.0-plateau-emulator', 'gitCommit': 'emulated',
                  'gitTreeState': 'clean', 'buildDate': '2024-08-13T00:00:00Z', 'goVersion': 'go1.22.5',
                  'compiler': 'gc', 'platform': 'linux/amd64'}
ADMIN_TOKEN = 'emulator-admin-token'
MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's request size limit
VERBS_BY_METHOD = {'POST': 'create', 'PUT': 'update', 'PATCH': 'patch'}


class _BigBodyServer(aiohttp.test_utils.RawTestServer):
    """aiohttp's raw test server, accepting bodies as large as kube-apiserver does (CRDs can be big)."""

    def __init__(self, handler: Any, *, ssl_context: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.ssl_context = ssl_context

    async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        await super().start_server(loop, ssl=self.ssl_context, **kwargs)

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web.ServerRunner:
        def factory(message: Any, payload: Any, protocol: Any, writer: Any, task: Any,
                    _cls: type[aiohttp.web.BaseRequest] = aiohttp.web.BaseRequest) -> aiohttp.web.BaseRequest:
            return _cls(message, payload, protocol, writer, task, protocol._loop, client_max_size=MAX_BODY)
        server = aiohttp.web.Server(self._handler, loop=self._loop, debug=debug, request_factory=factory, **kwargs)
        return aiohttp.web.ServerRunner(server, debug=debug, **kwargs)


@dataclasses.dataclass(frozen=True)
class Target:
    """A parsed /api or /apis URL."""
    group: str
    version: str
    plural: str = ''
    namespace: str | None = None
    name: str | None = None
    subresource: str = ''
    legacy_watch: bool = False

    @classmethod
    def parse(cls, path: str) -> Target | None:
        parts = [urllib.parse.unquote(p) for p in path.strip('/').split('/')]
        if len(parts) >= 2 and parts[0] == 'api':
            group, version, rest = '', parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == 'apis':
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        watch = bool(rest) and rest[0] == 'watch'
        rest = rest[1:] if watch else rest
        namespace = None
        is_namespace_subresource = group == '' and len(rest) == 3 and rest[2] in ('status', 'finalize')
        if len(rest) >= 3 and rest[0] == 'namespaces' and not is_namespace_subresource:
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            return None
        plural, name, subresource = rest + ['', '', ''][len(rest):]
        return cls(group, version, plural, namespace, name or None, subresource, watch)

    def verb(self, method: str, query: Mapping[str, str]) -> str:
        if method == 'GET':
            if self.legacy_watch or query.get('watch') in ('true', '1'):
                return 'watch'
            return 'get' if self.name else 'list'
        if method == 'DELETE':
            return 'delete' if self.name else 'deletecollection'
        return VERBS_BY_METHOD.get(method, method.lower())


def _selected_name(target: Target, query: Mapping[str, str]) -> str:
    """The name RBAC sees: the URL's, or a list/watch's `metadata.name=` field selector (as RequestInfo does)."""
    if target.name:
        return target.name
    match = re.fullmatch(r'metadata\.name==?([^,]+)', query.get('fieldSelector', ''))
    return match.group(1) if match else ''


def _table_version(accept: str) -> str | None:
    """meta.k8s.io version of a requested Table (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`)."""
    for media in accept.split(','):
        params = dict(p.strip().partition('=')[::2] for p in media.split(';')[1:])
        if params.get('as') == 'Table':
            return params.get('v', 'v1')
    return None


@attrs.define(kw_only=True, eq=False)
class ApiServer(kmock.KubernetesScaffold):
    """An emulated kube-apiserver on 127.0.0.1, over real HTTP.

    Use as `async with ApiServer() as api:`; then `api.url`, `api.write_kubeconfig(path)`.
    kmock's DSL still works on it: a reaction added with `api[...] << ...` answers before the emulation.
    """
    rbac: bool = False  # enforce RBAC for every user but the admin token's
    tls: bool = False  # serve HTTPS (self-signed): kubectl sends credentials only over TLS
    port: int | None = None  # None: a random free port
    gc_delay: float = 0.05  # how long the emulated controllers (GC…) take to react to a change
    bookmark_interval: float = 1.0  # how often a watch with allowWatchBookmarks gets a BOOKMARK
    history: int = 100_000  # how many changes watches can resume from before 410 Gone
    # kube-apiserver's --feature-gates, e.g. {'SidecarContainers': False} as 1.28 has it (builtins.FEATURE_GATES)
    feature_gates: dict[str, bool] = attrs.field(factory=dict)

    cluster: Cluster = attrs.field(init=False)
    authorizer: Authorizer = attrs.field(init=False)
    faults: list[Fault] = attrs.field(factory=list, init=False)
    log: list[RequestRecord] = attrs.field(factory=list, init=False)
    pod_logs: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)
    _server: kmock.Server | None = attrs.field(default=None, init=False)
    _controllers: asyncio.Task[None] | None = attrs.field(default=None, init=False)
    _openapi_cache: dict[tuple[str, ...], Any] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        # Deliberately not kmock's: its fallback reactions are replaced by the emulation in _handle().
        self.cluster = Cluster(history=self.history, feature_gates=self.feature_gates)
        self.authorizer = Authorizer(self.cluster.store)
        self.authorizer.tokens[ADMIN_TOKEN] = ADMIN

    # Lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        context = tls.server_context() if self.tls else None
        # kmock only calls server_cls(handler, host=, port=), so a partial carries the TLS context.
        server_cls = cast(type[aiohttp.test_utils.RawTestServer],
                          functools.partial(_BigBodyServer, ssl_context=context))
        self._server = kmock.Server(self, port=self.port, user_agent='', server_cls=server_cls)
        await self._server.__aenter__()
        self._controllers = asyncio.create_task(self._run_controllers(), name='apiserver-controllers')
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._controllers is not None and self._server is not None
        self._controllers.cancel()
        await asyncio.gather(self._controllers, return_exceptions=True)
        await self._server.__aexit__(exc_type, exc, tb)
        await super().__aexit__(exc_type, exc, tb)

    async def _run_controllers(self) -> None:
        written = self.cluster.store.written
        while True:
            await written.wait()
            written.clear()
            await asyncio.sleep(self.gc_delay)
            self.cluster.reconcile()

    @property
    def url(self) -> str:  # type: ignore[override]
        assert self._server is not None, 'the server is not started'
        return str(self._server.url).rstrip('/')

    # Test-facing API ---------------------------------------------------------------------------

    def add_token(self, token: str, user: str, groups: tuple[str, ...] = ()) -> None:
        self.authorizer.tokens[token] = User(user, tuple(groups))

    def service_account_token(self, namespace: str, name: str) -> str:
        """A bearer token authenticating as system:serviceaccount:<namespace>:<name>."""
        token = f'sa-{namespace}-{name}-{secrets.token_hex(8)}'
        self.authorizer.tokens[token] = service_account_user(namespace, name)
        return token

    def apply(self, *documents: Mapping[str, Any] | str) -> list[dict[str, Any]]:
        """Create objects as the admin (dicts or YAML text with `---` documents), e.g. CRDs and RBAC.

        Existing objects are replaced. Returns the stored objects.
        """
        created = []
        for doc in documents:
            for obj in (yaml.safe_load_all(doc) if isinstance(doc, str) else [doc]):
                if not obj:
                    continue
                rt = self.resource_for(obj['apiVersion'], obj['kind'])
                meta = obj.get('metadata') or {}
                namespace = meta.get('namespace', 'default') if rt.namespaced else ''
                if self.cluster.store.get(rt.key, namespace, meta.get('name', '')) is None:
                    created.append(self.cluster.create(rt, namespace, obj))
                else:
                    created.append(self.cluster.update(rt, namespace, meta['name'], obj))
        return created

    def grant(self, user: str, rules: list[Mapping[str, Any]], namespace: str | None = None) -> None:
        """Give a user (or system:serviceaccount:ns:name) these PolicyRules, cluster-wide or in one namespace."""
        name = f'grant-{secrets.token_hex(4)}'
        if user.startswith('system:serviceaccount:'):
            sa_namespace, sa_name = user.split(':')[2:4]
            subject = {'kind': 'ServiceAccount', 'namespace': sa_namespace, 'name': sa_name}
        else:
            subject = {'kind': 'User', 'apiGroup': 'rbac.authorization.k8s.io', 'name': user}
        role_kind = 'Role' if namespace else 'ClusterRole'
        meta = {'name': name, **({'namespace': namespace} if namespace else {})}
        self.apply({'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': role_kind, 'metadata': meta,
                    'rules': [dict(r) for r in rules]},
                   {'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': f'{role_kind}Binding', 'metadata': meta,
                    'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': role_kind, 'name': name},
                    'subjects': [subject]})

    def inject(self, path: str = '', verb: str | None = None, status: int | None = 503, *, delay: float = 0.0,
               times: int | None = 1, message: str = 'injected fault') -> Fault:
        """Make the next `times` requests matching (verb, path regex) fail with `status` and/or hang `delay` s."""
        fault = Fault(path=path, verb=verb, status=status, delay=delay, times=times, message=message)
        self.faults.append(fault)
        return fault

    def calls(self, verb: str | None = None, resource: str | None = None, *, method: str | None = None,
              path: str | None = None, subresource: str | None = None) -> list[RequestRecord]:
        """Logged requests matching all the given filters (path is a regex searched in the URL path)."""
        wanted = {'verb': verb, 'resource': resource, 'subresource': subresource,
                  'method': method.upper() if method else None}
        return [r for r in self.log if all(v is None or getattr(r, k) == v for k, v in wanted.items())
                and (path is None or re.search(path, r.path))]

    def resource_for(self, api_version: str, kind: str) -> ResourceType:
        rt = self.cluster.registry.by_kind(api_version, kind)
        if rt is None:
            raise LookupError(f'no resource serves {kind} in {api_version}')
        return rt

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Stored objects of a kind, for assertions (bypasses HTTP, RBAC and faults)."""
        rt = self.resource_for(api_version, kind)
        return [self.cluster.present(rt, o) for o in self.cluster.store.items(rt.key, namespace)]

    def write_kubeconfig(self, path: str, token: str = ADMIN_TOKEN, namespace: str = 'default') -> str:
        ca = tls.certificate()[0] if self.tls else None
        return kubeconfig.write_kubeconfig(path, self.url, token, namespace, ca)

    def client_ssl(self) -> ssl.SSLContext | None:
        """What an aiohttp client needs to trust this server (None over plain HTTP)."""
        return tls.client_context() if self.tls else None

    # Request handling --------------------------------------------------------------------------

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw.read()
        try:
            request = await rendering.Request._parse(raw, id=len(self._requests))
        except ValueError:  # kmock's path parser fails on some valid URLs, e.g. /api/v1/namespaces
            request = rendering.Request(id=len(self._requests), raw_request=raw, url=raw.url, method=raw.method,
                                        params=dict(raw.query), headers=dict(raw.headers), body=body,
                                        text=body.decode(errors='replace'))
        self._requests.append(request)
        return await self._handle(request)

    @staticmethod
    def _json(body: Any, status: int = 200, warnings: list[str] | None = None,
              headers: Mapping[str, str] | None = None) -> aiohttp.web.Response:
        response = aiohttp.web.Response(body=json.dumps(body).encode(), status=status,
                                        content_type='application/json', headers=headers)
        for warning in dict.fromkeys(warnings or []):
            response.headers.add('Warning', f'299 - {json.dumps(warning)}')
        return response

    def _error(self, error: errors.ApiError) -> aiohttp.web.Response:
        return self._json(error.status(), error.code, headers=error.headers)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        query = dict(raw.query)
        target = Target.parse(raw.path)
        record = RequestRecord(method=raw.method, path=raw.path, query=query, body=request.data)
        if target is not None:
            record.verb = target.verb(raw.method, query)
            record.group, record.version, record.resource = target.group, target.version, target.plural
            record.subresource, record.namespace = target.subresource, target.namespace or ''
            record.name = target.name or ''
        self.log.append(record)
        try:
            response = await self._serve(request, raw, target, record)
        except errors.ApiError as e:
            response = self._error(e)
        except Exception as e:  # an emulator bug: answer like a failing server, and tell the test log why
            logger.exception('the emulated API server failed on %s %s', raw.method, raw.path)
            response = self._error(errors.internal(repr(e)))
        record.status = response.status
        return response

    async def _serve(self, request: rendering.Request, raw: aiohttp.web.BaseRequest, target: Target | None,
                     record: RequestRecord) -> aiohttp.web.StreamResponse:
        if raw.path.startswith('/_emulator/'):
            return await self._admin(raw)
        user = self.authorizer.authenticate(raw.headers.get('Authorization'))
        if user is None:
            if self.rbac:
                raise errors.unauthorized()
            user = ANONYMOUS
        record.user = user.name
        for fault in self.faults:
            if fault.matches(record.verb, raw.method, raw.path):
                fault.hits += 1
                await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    raise fault.error(record.group, record.resource, record.name)
                break
        if self.rbac:
            self._authorize(user, raw, target, record)
        if self._payloads:  # reactions added with kmock's DSL take precedence
            try:
                return await super()._handle(request)
            except NotImplementedError:
                pass
        if target is None:
            return self._non_resource(raw)
        if not target.plural:
            return self._json(self._resource_list(target))
        return await self._resource(raw, target, record, user)

    def _authorize(self, user: User, raw: aiohttp.web.BaseRequest, target: Target | None,
                   record: RequestRecord) -> None:
        resource_request = target is not None and bool(target.plural)
        verb = record.verb if resource_request else raw.method.lower()
        attrs_ = Attributes(user=user, verb=verb or '', path=raw.path, group=record.group, resource=record.resource,
                            subresource=record.subresource, namespace=record.namespace,
                            name=_selected_name(target, record.query) if target else '',
                            resource_request=resource_request)
        if not self.authorizer.allowed(attrs_):
            if resource_request:
                raise errors.forbidden_resource(attrs_.group, attrs_.resource, attrs_.name, attrs_.reason())
            raise errors.ApiError(403, 'Forbidden', f'forbidden: {attrs_.reason()}', {})

    # Discovery, OpenAPI and other non-resource endpoints ----------------------------------------

    def _non_resource(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path = raw.path.rstrip('/') or '/'
        registry = self.cluster.registry
        if path in ('/healthz', '/livez', '/readyz'):
            return aiohttp.web.Response(text='ok')
        if path == '/version':
            return self._json(SERVER_VERSION)
        if path == '/api':
            return self._json({'kind': 'APIVersions', 'versions': ['v1'], 'serverAddressByClientCIDRs': [
                {'clientCIDR': '0.0.0.0/0', 'serverAddress': f'{raw.host}'}]})
        if path == '/apis':
            groups = [self._group(g, vs) for g, vs in registry.group_versions().items() if g]
            return self._json({'kind': 'APIGroupList', 'apiVersion': 'v1', 'groups': groups})
        if match := re.fullmatch(r'/apis/([^/]+)', path):
            versions = registry.group_versions().get(match.group(1))
            if versions is None:
                raise errors.path_not_found()
            return self._json({'kind': 'APIGroup', 'apiVersion': 'v1', **self._group(match.group(1), versions)})
        if path == '/openapi/v2':
            if openapi_proto.MEDIA_TYPE in raw.headers.get('Accept', ''):  # client-go's OpenAPISchema() asks so
                return aiohttp.web.Response(body=self._openapi_v2_proto(), content_type=openapi_proto.CONTENT_TYPE)
            return self._json(self._openapi_v2())
        if path == '/openapi/v3':
            paths = {}
            for group, versions in registry.group_versions().items():
                for version in versions:
                    name = f'apis/{group}/{version}' if group else f'api/{version}'
                    digest = self._openapi_digest(group, version)
                    paths[name] = {'serverRelativeURL': f'/openapi/v3/{name}?hash={digest}'}
            return self._json({'paths': paths})
        if match := re.fullmatch(r'/openapi/v3/(?:api|apis/([^/]+))/([^/]+)', path):
            group, version = match.group(1) or '', match.group(2)
            if not registry.in_version(group, version):
                raise errors.path_not_found()
            return self._json(self._openapi(group, version))
        if path == '/':
            return self._json({'paths': sorted({'/api', '/api/v1', '/apis', '/version', '/openapi/v2', '/openapi/v3',
                                                '/healthz'} | {
                f'/apis/{g}/{v}' for g, vs in registry.group_versions().items() if g for v in vs})})
        return aiohttp.web.Response(status=404, text='404 page not found\n')

    @staticmethod
    def _group(group: str, versions: list[str]) -> dict[str, Any]:
        entries = [{'groupVersion': f'{group}/{v}', 'version': v} for v in versions]
        return {'name': group, 'versions': entries, 'preferredVersion': entries[0]}

    def _resource_list(self, target: Target) -> dict[str, Any]:
        types = self.cluster.registry.in_version(target.group, target.version)
        if not types or target.namespace is not None or target.legacy_watch:
            raise errors.path_not_found()
        group_version = f'{target.group}/{target.version}' if target.group else target.version
        return {'kind': 'APIResourceList', 'apiVersion': 'v1', 'groupVersion': group_version,
                'resources': [entry for rt in types for entry in rt.discovery()]}

    def _cached(self, *key: str, build: Any) -> Any:
        """OpenAPI documents are costly to build: keep them while the served kinds (and CRD schemas) stay."""
        served = [[rt.group, rt.version, rt.plural, rt.schema] for rt in self.cluster.registry.all() if rt.custom]
        full_key = (openapi.digest({'served': served}), *key)
        if full_key not in self._openapi_cache:
            if len(self._openapi_cache) >= 64:
                self._openapi_cache.clear()
            self._openapi_cache[full_key] = build()
        return self._openapi_cache[full_key]

    def _openapi(self, group: str, version: str) -> dict[str, Any]:
        return self._cached('v3', group, version, build=lambda: openapi.group_version_document(
            self.cluster.registry.in_version(group, version), SERVER_VERSION['gitVersion']))

    def _openapi_digest(self, group: str, version: str) -> str:
        return cast(str, self._cached('v3-digest', group, version,
                                      build=lambda: openapi.digest(self._openapi(group, version))))

    def _openapi_v2(self) -> dict[str, Any]:
        return self._cached('v2', build=lambda: openapi.swagger_document(self.cluster.registry.all(),
                                                                          SERVER_VERSION['gitVersion']))

    def _openapi_v2_proto(self) -> bytes:
        return cast(bytes, self._cached('v2-proto', build=lambda: openapi_proto.document(self._openapi_v2())))

    # Resources -------------------------------------------------------------------------------

    async def _body(self, raw: aiohttp.web.BaseRequest) -> Any:
        if raw.content_type == protobuf.MEDIA_TYPE:
            decoded = protobuf.decode(await raw.read())
            if decoded is None:
                raise errors.unsupported_media_type(['application/json', 'application/yaml'])
            return decoded
        text = await raw.text()
        try:
            if 'yaml' in raw.content_type:
                return yaml.safe_load(text)
            return json.loads(text) if text else None
        except (ValueError, yaml.YAMLError) as e:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from e

    async def _resource(self, raw: aiohttp.web.BaseRequest, target: Target, record: RequestRecord,
                        user: User) -> aiohttp.web.StreamResponse:
        rt = self.cluster.registry.lookup(target.group, target.version, target.plural)
        if rt is None or (target.namespace is not None and not rt.namespaced):
            raise errors.path_not_found()
        if rt.namespaced and target.name and target.namespace is None:
            raise errors.path_not_found()
        if target.subresource and target.subresource not in rt.subresources:
            raise errors.path_not_found()
        verb, query, cluster = record.verb, record.query, self.cluster
        namespace = target.namespace or ''
        name = target.name or ''
        dry_run = query.get('dryRun') == 'All'
        validation = query.get('fieldValidation') or 'Warn'
        if validation not in ('Strict', 'Warn', 'Ignore'):
            raise errors.bad_request(f'fieldValidation must be one of Strict, Warn, Ignore, not {validation!r}')
        warnings: list[str] = []
        table = _table_version(raw.headers.get('Accept', ''))
        scope = target.namespace if rt.namespaced else None
        if verb not in rt.verbs and not (target.subresource and verb in ('get', 'update', 'patch')):
            raise errors.method_not_allowed()
        match verb, target.subresource:
            case 'watch', '':
                return await self._watch(raw, rt, scope, query, table, record, name)
            case 'list', '':
                listed = cluster.list_objects(rt, scope, query.get('labelSelector', ''), query.get('fieldSelector', ''),
                                      int(query.get('limit') or 0), query.get('continue', ''))
                if table:
                    return self._json(self._table(rt, listed['items'], listed['metadata'], table, query))
                return self._json(listed)
            case 'get', '':
                obj = cluster.get(rt, namespace, name)
                return self._json(self._table(rt, [obj], {'resourceVersion': obj['metadata']['resourceVersion']},
                                              table, query) if table else obj)
            case 'get', 'scale':
                return self._json(cluster.scale(rt, cluster.existing(rt, namespace, name)))
            case 'get', 'log':
                cluster.existing(rt, namespace, name)
                return aiohttp.web.Response(text=self.pod_logs.get((namespace, name), ''))
            case 'get', _:
                return self._json(cluster.get(rt, namespace, name))
            case 'create', '':
                if target.name:
                    raise errors.method_not_allowed()
                body = await self._body(raw)
                if rt.kind == 'SelfSubjectAccessReview':
                    return self._json(self._access_review(body, user), 201)
                obj = cluster.create(rt, namespace, body, dry_run=dry_run, validation=validation, warnings=warnings)
                return self._json(obj, 201, warnings)
            case 'update', 'scale':
                return self._json(cluster.update_scale(rt, namespace, name, await self._body(raw), dry_run=dry_run))
            case 'update', _:
                obj = cluster.update(rt, namespace, name, await self._body(raw), subresource=target.subresource or None,
                                     dry_run=dry_run, validation=validation, warnings=warnings)
                return self._json(obj, 200, warnings)
            case 'patch', _:
                obj = cluster.patch(rt, namespace, name, raw.content_type, await raw.read(),
                                    subresource=target.subresource or None, dry_run=dry_run, validation=validation,
                                    field_manager=query.get('fieldManager', ''), warnings=warnings)
                return self._json(obj, 200, warnings)
            case 'delete', '':
                options = await self._delete_options(raw, query)
                return self._json(cluster.delete(rt, namespace, name, options, dry_run=dry_run, warnings=warnings),
                                  200, warnings)
            case 'deletecollection', '':
                options = await self._delete_options(raw, query)
                return self._json(cluster.delete_collection(rt, scope, options, query.get('labelSelector', ''),
                                                            query.get('fieldSelector', ''), dry_run=dry_run,
                                                            warnings=warnings), 200, warnings)
        raise errors.method_not_allowed()

    async def _delete_options(self, raw: aiohttp.web.BaseRequest, query: Mapping[str, str]) -> dict[str, Any]:
        options = dict(await self._body(raw) or {})
        if 'propagationPolicy' in query:
            options['propagationPolicy'] = query['propagationPolicy']
        if 'orphanDependents' in query:
            options['orphanDependents'] = query['orphanDependents'] == 'true'
        return options

    def _access_review(self, review: Any, user: User) -> dict[str, Any]:
        spec = (review or {}).get('spec') or {}
        res, non_res = spec.get('resourceAttributes'), spec.get('nonResourceAttributes')
        if res:
            attrs_ = Attributes(user=user, verb=res.get('verb', ''), path='', group=res.get('group', ''),
                                resource=res.get('resource', ''), subresource=res.get('subresource', ''),
                                namespace=res.get('namespace', ''), name=res.get('name', ''), resource_request=True)
        else:
            attrs_ = Attributes(user=user, verb=(non_res or {}).get('verb', ''), path=(non_res or {}).get('path', ''))
        # RBAC denies with no opinion and no reason, so the review carries none either.
        return {**review, 'status': {'allowed': not self.rbac or self.authorizer.allowed(attrs_)}}

    def _table(self, rt: ResourceType, objects: list[dict[str, Any]], meta: Mapping[str, Any], version: str,
               query: Mapping[str, str]) -> dict[str, Any]:
        include = query.get('includeObject', 'Metadata')
        rows = []
        for obj in objects:
            row: dict[str, Any] = {'cells': [column.cell(obj) for column in rt.columns]}
            if include == 'Object':
                row['object'] = obj
            elif include != 'None':
                row['object'] = {'kind': 'PartialObjectMetadata', 'apiVersion': f'meta.k8s.io/{version}',
                                 'metadata': obj['metadata']}
            rows.append(row)
        return {'kind': 'Table', 'apiVersion': f'meta.k8s.io/{version}', 'metadata': dict(meta),
                'columnDefinitions': [c.definition() for c in rt.columns], 'rows': rows}

    # Watch -----------------------------------------------------------------------------------

    async def _watch(self, raw: aiohttp.web.BaseRequest, rt: ResourceType, namespace: str | None,
                     query: Mapping[str, str], table: str | None, record: RequestRecord,
                     name: str) -> aiohttp.web.StreamResponse:
        field_selector = ','.join(filter(None, [query.get('fieldSelector', ''), name and f'metadata.name={name}']))
        labels = selectors.parse_label_selector(query.get('labelSelector', ''))
        fields = selectors.parse_field_selector(field_selector, rt.field_labels)
        store = self.cluster.store
        rv = query.get('resourceVersion', '')
        initial = rv in ('', '0') or query.get('sendInitialEvents') == 'true'
        if not (initial or rv.isdigit()):
            raise errors.bad_request(f'invalid resource version: {rv}')
        bookmarks = query.get('allowWatchBookmarks') == 'true'
        timeout = float(query['timeoutSeconds']) if query.get('timeoutSeconds') else None

        def matches(obj: dict[str, Any] | None) -> bool:
            return (obj is not None and (namespace is None or obj['metadata'].get('namespace') == namespace)
                    and selectors.labels_match(labels, obj['metadata'].get('labels'))
                    and selectors.fields_match(fields, obj, rt.field_labels))

        response = aiohttp.web.StreamResponse(headers={'Content-Type': 'application/json'})
        await response.prepare(raw)
        record.status = 200

        async def send(kind: str, obj: dict[str, Any]) -> None:
            if table and kind != 'BOOKMARK':
                obj = self._table(rt, [obj], {'resourceVersion': obj['metadata']['resourceVersion']}, table, query)
            await response.write(json.dumps({'type': kind, 'object': obj}).encode() + b'\n')

        def bookmark(rv: int, **annotations: str) -> dict[str, Any]:
            meta: dict[str, Any] = {'resourceVersion': str(rv)}
            if annotations:
                meta['annotations'] = annotations
            return {'kind': rt.kind, 'apiVersion': rt.api_version, 'metadata': meta}

        # The snapshot and the subscription are taken together (no await between): no change is lost or doubled.
        subscription = store.subscribe(None if initial else int(rv))
        selected = self.cluster.select(rt, namespace, query.get('labelSelector', ''), field_selector)
        snapshot = [self.cluster.present(rt, obj) for obj in selected] if initial else []
        snapshot_rv = store.rv
        if subscription is None:
            error = errors.expired(f'too old resource version: {rv} ({store.oldest_rv})')
            await response.write(json.dumps({'type': 'ERROR', 'object': error.status()}).encode() + b'\n')
            await response.write_eof()
            return response
        backlog, queue = subscription
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        try:
            for obj in snapshot:
                await send('ADDED', obj)
            if initial and query.get('sendInitialEvents') == 'true' and bookmarks:
                await send('BOOKMARK', bookmark(snapshot_rv, **{'k8s.io/initial-events-end': 'true'}))
            for change in backlog:
                await self._send_change(rt, change, matches, send)
            while deadline is None or loop.time() < deadline:
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    wait = min(wait, deadline - loop.time()) if wait is not None else deadline - loop.time()
                try:
                    change = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if bookmarks and (deadline is None or loop.time() < deadline):
                        await send('BOOKMARK', bookmark(store.rv))
                    continue
                await self._send_change(rt, change, matches, send)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away
        finally:
            store.unsubscribe(queue)
        return response

    async def _send_change(self, rt: ResourceType, change: Change, matches: Any, send: Any) -> None:
        """Send a change as a watcher of a filtered view sees it: entering the view is ADDED, leaving it DELETED."""
        if change.key != rt.key:
            return
        was, now_ = matches(change.old), matches(change.obj) and change.type != 'DELETED'
        if change.type == 'DELETED':
            kind = 'DELETED' if matches(change.obj) else None
        elif was and now_:
            kind = 'MODIFIED'
        elif now_:
            kind = 'ADDED'
        else:
            kind = 'DELETED' if was else None
        if kind is not None:
            await send(kind, self.cluster.present(rt, change.obj))

    # Admin endpoints -------------------------------------------------------------------------

    async def _admin(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Test controls: /_emulator/faults, /_emulator/requests, /_emulator/tokens, /_emulator/compact."""
        what, method = raw.path.removeprefix('/_emulator/').strip('/'), raw.method
        body: dict[str, Any] = (await self._body(raw) if method in ('POST', 'PUT') else None) or {}
        match what, method:
            case 'faults', 'GET':
                return self._json([f.to_json() for f in self.faults])
            case 'faults', 'POST':
                fields = {k: v for k, v in body.items() if k in ('path', 'verb', 'status', 'delay', 'times',
                                                                'message')}
                return self._json(self.inject(**fields).to_json(), 201)
            case 'faults', 'DELETE':
                self.faults.clear()
                return self._json({})
            case 'requests', 'GET':
                return self._json([r.to_json() for r in self.log])
            case 'requests', 'DELETE':
                self.log.clear()
                return self._json({})
            case 'tokens', 'POST':
                if body.get('serviceAccount'):
                    namespace, name = body['serviceAccount'].split('/')
                    return self._json({'token': self.service_account_token(namespace, name)}, 201)
                self.add_token(body['token'], body['user'], tuple(body.get('groups') or ()))
                return self._json({'token': body['token']}, 201)
            case 'rbac', 'PUT':
                self.rbac = bool(body.get('enabled'))
                return self._json({'enabled': self.rbac})
            case 'compact', 'POST':
                self.cluster.store.compact()
                return self._json({'resourceVersion': str(self.cluster.store.rv)})
        return self._json(errors.path_not_found().status(), 404)
