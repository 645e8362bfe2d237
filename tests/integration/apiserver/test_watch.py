"""
Pins watch semantics: synthetic ADDED events for the current state, ordered ADDED/MODIFIED/DELETED
events after a given resourceVersion, BOOKMARKs, timeoutSeconds, 410 Gone for compacted history,
and objects entering or leaving a label-selected view.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.support.apiserver.samples import pod
from tests.support.apiserver.testing import send, wait_until

PODS = '/api/v1/namespaces/default/pods'
MERGE = 'application/merge-patch+json'

pytest_plugins = ['tests.support.apiserver.fixtures']


async def collect(http: aiohttp.ClientSession, count: int, **params: str) -> list[tuple[str, dict[str, Any]]]:
    """The first `count` events of a watch (or fewer if the server ends it)."""
    events = []
    async with http.get(PODS, params={'watch': 'true', **params}) as response:
        assert response.status == 200
        async for line in response.content:
            event = json.loads(line)
            events.append((event['type'], event['object']))
            if len(events) == count:
                break
    return events


async def test_watch_from_now_lists_the_current_state_first(http):
    await send(http, 'POST', PODS, pod('p1'))
    events = await collect(http, 1)
    assert [(kind, obj['metadata']['name']) for kind, obj in events] == [('ADDED', 'p1')]
    assert events[0][1]['kind'] == 'Pod'


async def test_watch_resumes_after_a_resource_version(http):
    _, first, _ = await send(http, 'POST', PODS, pod('p1'))
    await send(http, 'PATCH', f'{PODS}/p1', {'metadata': {'labels': {'a': 'b'}}}, content_type=MERGE)
    await send(http, 'POST', PODS, pod('p2'))
    await send(http, 'DELETE', f'{PODS}/p1')
    events = await collect(http, 3, resourceVersion=first['metadata']['resourceVersion'])
    assert [(kind, obj['metadata']['name']) for kind, obj in events] == [
        ('MODIFIED', 'p1'), ('ADDED', 'p2'), ('DELETED', 'p1')]
    versions = [int(obj['metadata']['resourceVersion']) for _, obj in events]
    assert versions == sorted(versions) and versions[0] > int(first['metadata']['resourceVersion'])


async def test_watch_streams_live_changes(http):
    _, listed, _ = await send(http, 'GET', PODS)
    watcher = asyncio.create_task(collect(http, 2, resourceVersion=listed['metadata']['resourceVersion']))
    await asyncio.sleep(0.1)
    await send(http, 'POST', PODS, pod('p1'))
    await send(http, 'DELETE', f'{PODS}/p1')
    assert [kind for kind, _ in await asyncio.wait_for(watcher, 5)] == ['ADDED', 'DELETED']


async def test_bookmarks_carry_only_a_resource_version(apiserver, http):
    apiserver.bookmark_interval = 0.05
    _, listed, _ = await send(http, 'GET', PODS)
    [(kind, obj)] = await collect(http, 1, resourceVersion=listed['metadata']['resourceVersion'],
                                  allowWatchBookmarks='true')
    assert kind == 'BOOKMARK'
    assert obj == {'kind': 'Pod', 'apiVersion': 'v1',
                   'metadata': {'resourceVersion': listed['metadata']['resourceVersion']}}


async def test_send_initial_events_ends_with_a_marked_bookmark(http):
    await send(http, 'POST', PODS, pod('p1'))
    events = await collect(http, 2, sendInitialEvents='true', resourceVersionMatch='NotOlderThan',
                           allowWatchBookmarks='true')
    assert [kind for kind, _ in events] == ['ADDED', 'BOOKMARK']
    assert events[1][1]['metadata']['annotations'] == {'k8s.io/initial-events-end': 'true'}


async def test_timeout_seconds_ends_the_stream(http):
    _, listed, _ = await send(http, 'GET', PODS)
    started = asyncio.get_running_loop().time()
    assert await collect(http, 99, resourceVersion=listed['metadata']['resourceVersion'], timeoutSeconds='1') == []
    assert 0.9 < asyncio.get_running_loop().time() - started < 3


async def test_a_compacted_resource_version_is_410_gone(apiserver, http):
    _, first, _ = await send(http, 'POST', PODS, pod('p1'))
    await send(http, 'POST', PODS, pod('p2'))
    apiserver.cluster.store.compact()
    [(kind, status)] = await collect(http, 1, resourceVersion=first['metadata']['resourceVersion'])
    assert kind == 'ERROR'
    assert (status['code'], status['reason']) == (410, 'Expired')
    assert status['message'].startswith(f'too old resource version: {first["metadata"]["resourceVersion"]} (')


async def test_objects_entering_and_leaving_a_selector_are_added_and_deleted(http):
    _, listed, _ = await send(http, 'GET', PODS)
    watcher = asyncio.create_task(collect(http, 3, resourceVersion=listed['metadata']['resourceVersion'],
                                          labelSelector='plateau.dev/stopped=true'))
    await asyncio.sleep(0.1)
    await send(http, 'POST', PODS, pod('p1'))  # not selected: no event
    for value in ('true', 'false', 'true'):
        await send(http, 'PATCH', f'{PODS}/p1', {'metadata': {'labels': {'plateau.dev/stopped': value}}},
                   content_type=MERGE)
    assert [kind for kind, _ in await asyncio.wait_for(watcher, 5)] == ['ADDED', 'DELETED', 'ADDED']


async def test_watch_with_a_table_accept_header_streams_rows(http):
    await send(http, 'POST', PODS, pod('p1'))
    headers = {'Accept': 'application/json;as=Table;v=v1;g=meta.k8s.io'}
    async with http.get(PODS, params={'watch': 'true'}, headers=headers) as response:
        event = json.loads(await response.content.readline())
    assert event['object']['kind'] == 'Table' and event['object']['rows'][0]['cells'][0] == 'p1'


@pytest.mark.looptime
async def test_watches_and_controllers_run_on_looptimes_clock(apiserver, http):
    """Tests of timers may fast-forward the loop's clock with looptime; the emulator keeps up."""
    await send(http, 'POST', PODS, pod(ownerReferences=[{'apiVersion': 'v1', 'kind': 'ConfigMap', 'name': 'gone',
                                                         'uid': '0'}]))
    await wait_until(lambda: not apiserver.objects('v1', 'Pod'))  # the GC ran
    _, listed, _ = await send(http, 'GET', PODS)
    started = asyncio.get_running_loop().time()
    events = await collect(http, 999, resourceVersion=listed['metadata']['resourceVersion'], timeoutSeconds='120',
                           allowWatchBookmarks='true')
    assert asyncio.get_running_loop().time() - started == pytest.approx(120)
    assert {kind for kind, _ in events} == {'BOOKMARK'}
