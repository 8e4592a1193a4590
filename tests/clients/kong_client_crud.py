#!/usr/bin/env python3
"""CRUD on every entity kind of gwctl's Admin API with a real third-party Kong client (aio-kong).

Usage: python kong_client_crud.py http://127.0.0.1:PORT   (the admin listener of `gwctl serve`)

Run by tests/kong_client.rs with the venv that `tests/run.sh` builds for the `kongclient`
component (aio-kong + cryptography). It prints one line per checked step and exits non-zero with
a message naming the step on the first mismatch.

The point is that an unchanged Kong client works, so every call goes through aio-kong's own API
where it has one: `services`, `routes` (top-level and `service.routes`), `consumers`,
`consumer.acls` / `cli.acls`, `consumer.keyauths`, `consumer.jwts`, `plugins` (top-level and
scoped), `apply_json`, `paginate` / `get_full_list`. For the kinds aio-kong has no class for
(upstreams, targets, ca_certificates, the top-level key-auths and jwts collections) the script
uses aio-kong's generic `CrudComponent` under the Kong collection name, so the requests are
still built and sent by the client. PUT (upsert), which aio-kong never sends, goes through the
client's own `execute`.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import sys
import traceback
import uuid
from typing import Any, Awaitable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from kong.auths import Auth
from kong.client import Kong
from kong.components import CrudComponent, KongEntity, KongResponseError

PLUGIN_NOT_ENABLED = "plugin '{}' not enabled"
PAGING_CONSUMERS = 150  # more than one default page (100)


class Mismatch(Exception):
    """gwctl answered differently from Kong."""


def ok(step: str) -> None:
    print(f"ok   {step}", flush=True)


def check(cond: bool, step: str, detail: Any = "") -> None:
    if not cond:
        raise Mismatch(f"{step}: {detail}")
    ok(step)


def eq(actual: Any, expected: Any, step: str) -> None:
    if actual != expected:
        raise Mismatch(f"{step}: expected {expected!r}, got {actual!r}")
    ok(step)


async def fails(call: Awaitable[Any], status: int, needle: str, step: str) -> dict:
    """The call must raise aio-kong's KongResponseError with `status` and `needle` in the message."""
    try:
        got = await call
    except KongResponseError as e:
        body = e.message
        if e.status != status:
            raise Mismatch(f"{step}: expected HTTP {status}, got {e.status}: {e}") from None
        if needle not in str(body.get("message", "")):
            raise Mismatch(f"{step}: expected {needle!r} in the message, got {e}") from None
        ok(step)
        return body
    raise Mismatch(f"{step}: expected HTTP {status}, the call succeeded with {got!r}")


class Nested(CrudComponent):
    """A child collection whose entities live under the parent's URL too
    (`/upstreams/{u}/targets/{t}`), the way aio-kong's own `ConsumerAuth` addresses credentials."""

    @property
    def url(self) -> str:
        return f"{self.root.url}/{self.name}"


# ---------------------------------------------------------------------------------------------
# Key material, generated fresh (cryptography).


def make_cert(cn: str, *, ca: bool = True, expired: bool = False) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    if expired:
        not_before, not_after = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
    else:
        not_before, not_after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def digest(pem: str) -> str:
    """Kong's `cert_digest`: hex SHA-256 of the certificate's DER."""
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def rsa_public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# ---------------------------------------------------------------------------------------------
# Entity kinds.


async def services_and_routes(cli: Kong) -> None:
    svc = await cli.services.create(name="svc-a", host="a.example", port=8080, tags=["crud"])
    check(
        svc["name"] == "svc-a" and svc.host == "a.example" and svc["port"] == 8080,
        "services.create (POST /services)",
        svc,
    )
    eq((svc.protocol, svc["path"], svc["tags"]), ("http", None, ["crud"]), "service defaults")
    eq((await cli.services.get("svc-a")).id, svc.id, "services.get by name")
    eq((await cli.services.get(svc.id)).name, "svc-a", "services.get by id")
    eq(await cli.services.has("svc-a"), True, "services.has (existing)")
    eq(await cli.services.has(str(uuid.uuid4())), False, "services.has (404 -> False)")

    upd = await cli.services.update("svc-a", port=9090, path="/v1")
    eq((upd["port"], upd["path"], upd.host), (9090, "/v1", "a.example"), "services.update (PATCH)")

    by_url = await cli.services.create(name="svc-url", url="https://b.example:8443/p")
    eq(
        (by_url.protocol, by_url.host, by_url["port"], by_url["path"]),
        ("https", "b.example", 8443, "/p"),
        "services.create with the url shorthand",
    )
    await fails(
        cli.services.create(name="svc-a", host="dup.example"),
        409,
        "UNIQUE violation",
        "services.create duplicate name -> 409",
    )
    put = await cli.execute(f"{cli.url}/services/svc-put", "put", json={"host": "c.example"})
    eq((put["name"], put["host"]), ("svc-put", "c.example"), "PUT /services/{name} (upsert)")
    names = {s.name for s in await cli.services.get_list()}
    eq(names, {"svc-a", "svc-url", "svc-put"}, "services.get_list")
    eq([s.name for s in await cli.services.get_list(tags="crud")], ["svc-a"], "services.get_list(tags=)")

    # Routes: top-level with the service by id and by name, and nested under the service.
    top = await cli.routes.create(name="r-top", service={"id": svc.id}, paths=["/top"])
    eq(top["service"], {"id": svc.id}, "routes.create (POST /routes, service by id)")
    ref = await cli.routes.create(name="r-ref", service={"name": "svc-a"}, paths=["/ref"])
    eq(ref["service"], {"id": svc.id}, "routes.create (service referenced by name)")
    nested = await svc.routes.create(name="r-nested", paths=["/n"], methods=["GET"])
    eq(
        (nested["service"], nested["paths"], nested["methods"]),
        ({"id": svc.id}, ["/n"], ["GET"]),
        "service.routes.create (POST /services/{id}/routes)",
    )
    eq(
        {r.name for r in await svc.routes.get_list()},
        {"r-top", "r-ref", "r-nested"},
        "service.routes.get_list (GET /services/{id}/routes)",
    )
    eq(len(await by_url.routes.get_list()), 0, "another service's nested routes are empty")
    eq((await cli.routes.get("r-nested")).id, nested.id, "routes.get by name")
    eq((await svc.routes.get(nested.id)).name, "r-nested", "service.routes.get by id")
    upd = await cli.routes.update("r-nested", paths=["/n2"], strip_path=False)
    eq((upd["paths"], upd["strip_path"], upd["methods"]), (["/n2"], False, ["GET"]), "routes.update (PATCH)")
    upd = await svc.routes.update(top.id, hosts=["top.example"])
    eq((upd["hosts"], upd["paths"]), (["top.example"], ["/top"]), "service.routes.update (PATCH)")
    eq(len(await cli.routes.get_list()), 3, "routes.get_list")
    eq(await cli.execute(f"{cli.url}/routes/r-top/service", wrap=lambda d: d["id"]), svc.id,
       "GET /routes/{name}/service")
    await fails(
        cli.routes.create(name="r-bad", service={"name": "nope"}, paths=["/x"]),
        400,
        "foreign key unresolved",
        "routes.create with an unknown service name -> 400",
    )

    # A service with routes cannot be deleted by itself (the plain DELETE, without aio-kong's cascade).
    await fails(
        CrudComponent.delete(cli.services, svc.id),
        400,
        "an existing 'routes' entity references this 'services' entity",
        "DELETE /services/{id} with routes -> 400",
    )
    eq(await cli.routes.delete("r-top"), True, "routes.delete (GETs its plugins, then DELETE)")
    eq(await cli.routes.has("r-top"), False, "deleted route is gone")
    # (aio-kong's routes.delete of a missing route fails on GET /routes/{id}/plugins -> 404, as with
    # Kong; the plain DELETE is idempotent.)
    eq(await CrudComponent.delete(cli.routes, str(uuid.uuid4())), True, "DELETE /routes/{missing id} -> 204")

    # apply_json: create a service with routes, then re-apply (update + replace routes).
    spec = {"name": "svc-json", "host": "json.example", "port": 80,
            "routes": [{"name": "rj1", "paths": ["/j1"]}, {"name": "rj2", "paths": "/j2", "methods": "GET"}]}
    [applied] = await cli.services.apply_json(spec)
    eq(
        sorted((r["name"], r["paths"][0]) for r in applied["routes"]),
        [("rj1", "/j1"), ("rj2", "/j2")],
        "services.apply_json creates a service with routes",
    )
    spec2 = {"name": "svc-json", "host": "json2.example", "port": 81, "routes": [{"name": "rj1", "paths": ["/j1b"]}]}
    [applied2] = await cli.services.apply_json(spec2)
    got = await cli.services.get("svc-json")
    eq((got.id, got.host, got["port"]), (applied["id"], "json2.example", 81), "services.apply_json updates in place")
    eq(
        [(r["name"], r["paths"]) for r in await got.routes.get_list()],
        [("rj1", ["/j1b"])],
        "services.apply_json replaced the routes",
    )

    # aio-kong's delete cascades: it pages the service's routes (and their plugins) and deletes them.
    eq(await cli.services.delete("svc-a"), True, "services.delete (cascading through routes)")
    eq(await cli.services.has("svc-a"), False, "deleted service is gone")
    eq(await cli.routes.has("r-nested"), False, "its routes are gone")
    eq(await cli.services.delete_all(), 3, "services.delete_all")
    eq((len(await cli.services.get_list()), len(await cli.routes.get_list())), (0, 0), "no services or routes left")


async def upstreams_and_targets(cli: Kong) -> None:
    upstreams = CrudComponent(cli, KongEntity, "upstreams")
    up = await upstreams.create(name="up-a", healthchecks={"active": {"healthy": {"interval": 5}}})
    eq(
        (up.name, up["algorithm"], up["slots"], up["hash_on"]),
        ("up-a", "round-robin", 10000, "none"),
        "upstreams.create (POST /upstreams)",
    )
    eq((await upstreams.get("up-a")).id, up.id, "upstreams.get by name")
    upd = await upstreams.update(
        up.id, algorithm="consistent-hashing", hash_on="header", hash_on_header="x-user",
        healthchecks={"active": {"unhealthy": {"interval": 7}}},
    )
    active = upd["healthchecks"]["active"]
    eq(
        (upd["algorithm"], upd["hash_on_header"], active["healthy"]["interval"], active["unhealthy"]["interval"]),
        ("consistent-hashing", "x-user", 5, 7),
        "upstreams.update (PATCH merges healthchecks)",
    )
    eq([u.name for u in await upstreams.get_list()], ["up-a"], "upstreams.get_list")

    targets = Nested(up, KongEntity, "targets")
    t1 = await targets.create(target="10.0.0.1:80", weight=50)
    t2 = await targets.create(target="10.0.0.2")
    eq((t1["target"], t1["weight"], t1["upstream"]), ("10.0.0.1:80", 50, {"id": up.id}),
       "targets.create (POST /upstreams/{id}/targets)")
    eq((t2["target"], t2["weight"]), ("10.0.0.2:8000", 100), "target port and weight defaults")
    eq({t["target"] for t in await targets.get_list()}, {"10.0.0.1:80", "10.0.0.2:8000"}, "targets.get_list")
    eq((await targets.get("10.0.0.1:80")).id, t1.id, "targets.get by host:port")
    eq((await targets.update(t1.id, weight=0))["weight"], 0, "targets.update (PATCH)")
    eq((await targets.update("10.0.0.2:8000", weight=5))["weight"], 5, "targets.update by host:port")
    await fails(targets.create(target="10.0.0.1:80"), 409, "UNIQUE violation", "targets.create duplicate -> 409")
    eq(await targets.delete("10.0.0.1:80"), True, "targets.delete by host:port")
    eq(await targets.has(t1.id), False, "deleted target is gone")

    eq(await upstreams.delete("up-a"), True, "upstreams.delete (cascades to targets)")
    eq(await upstreams.has(up.id), False, "deleted upstream is gone")
    eq(await targets.has(t2.id), False, "its targets are gone")


async def consumers_and_credentials(cli: Kong) -> None:
    alice = await cli.consumers.create(username="alice", custom_id="c-alice", tags=["crud"])
    eq((alice.username, alice["custom_id"], alice["tags"]), ("alice", "c-alice", ["crud"]),
       "consumers.create (POST /consumers)")
    eq((await cli.consumers.get("alice")).id, alice.id, "consumers.get by username")
    eq((await cli.consumers.get(alice.id)).username, "alice", "consumers.get by id")
    upd = await cli.consumers.update("alice", custom_id="c-alice2")
    eq((upd.username, upd["custom_id"]), ("alice", "c-alice2"), "consumers.update (PATCH)")
    eq([c.id for c in await cli.consumers.get_list(custom_id="c-alice2")], [alice.id],
       "consumers.get_list(custom_id=)")
    await fails(cli.consumers.create(tags=["x"]), 400, "at least one of these fields must be non-empty",
                "consumers.create without username/custom_id -> 400")
    await fails(cli.consumers.create(username="alice"), 409, "UNIQUE violation",
                "consumers.create duplicate username -> 409")
    put = await cli.execute(f"{cli.url}/consumers/dave", "put", json={"custom_id": "c-dave"})
    eq((put["username"], put["custom_id"]), ("dave", "c-dave"), "PUT /consumers/{username} (upsert)")

    # key-auth credentials: JSON calls (create/get/update/delete) and aio-kong's form-encoded ones.
    keys = alice.keyauths
    k1 = await keys.create(key="alice-key-1")
    eq((k1["key"], k1["consumer"]), ("alice-key-1", {"id": alice.id}),
       "consumer.keyauths.create (POST /consumers/{id}/key-auth)")
    k2 = await keys.create_credentials(data={"key": "alice-key-2"})
    eq(k2["key"], "alice-key-2", "consumer.keyauths.create_credentials (form-encoded POST)")
    k3 = await keys.create()
    check(len(k3["key"]) == 32 and k3["key"].isalnum(), "key-auth key generated when omitted", k3)
    eq((await keys.get("alice-key-1")).id, k1.id, "consumer.keyauths.get by key")
    eq((await keys.get(k2.id))["key"], "alice-key-2", "consumer.keyauths.get by id")
    eq((await keys.update(k1.id, tags=["t"]))["tags"], ["t"], "consumer.keyauths.update (PATCH)")
    upd = await keys.update_credentials(k2.id, data={"key": "alice-key-2b"})
    eq((upd.id, upd["key"]), (k2.id, "alice-key-2b"), "consumer.keyauths.update_credentials (form PATCH)")
    same = await keys.create_or_update_credentials({"key": "alice-key-2b"})
    eq(same.id, k2.id, "consumer.keyauths.create_or_update_credentials finds the existing key")
    eq({k["key"] for k in await keys.get_list()}, {"alice-key-1", "alice-key-2b", k3["key"]},
       "consumer.keyauths.get_list")
    await fails(keys.create(key="alice-key-1"), 409, "UNIQUE violation", "key-auth duplicate key -> 409")
    all_keys = CrudComponent(cli, Auth, "key-auths")
    eq(len(await all_keys.get_list()), 3, "GET /key-auths")
    eq((await all_keys.get("alice-key-1")).id, k1.id, "GET /key-auths/{key}")
    eq(await keys.delete(k3.id), True, "consumer.keyauths.delete")
    eq(await keys.has(k3.id), False, "deleted key is gone")
    bob = await cli.consumers.create(username="bob")
    generated = await bob.keyauths.get_or_create()
    eq(len(generated["key"]), 32, "consumer.keyauths.get_or_create creates a key")
    eq((await bob.keyauths.get_or_create()).id, generated.id, "consumer.keyauths.get_or_create finds it again")

    # jwt credentials.
    jwts = alice.jwts
    j1 = await jwts.create(key="alice-iss", secret="s3cret")
    eq((j1["key"], j1["secret"], j1["algorithm"], j1["consumer"]),
       ("alice-iss", "s3cret", "HS256", {"id": alice.id}), "consumer.jwts.create (POST /consumers/{id}/jwt)")
    pem = rsa_public_pem()
    j2 = await jwts.create_credentials(data={"key": "alice-rsa", "algorithm": "RS256", "rsa_public_key": pem})
    eq((j2["algorithm"], j2["rsa_public_key"]), ("RS256", pem), "consumer.jwts.create_credentials (form, RS256 key)")
    j3 = await jwts.create()
    check(bool(j3["key"]) and bool(j3["secret"]), "jwt key and secret generated when omitted", j3)
    await fails(jwts.create(key="alice-rs-nokey", algorithm="RS256"), 400, "rsa_public_key",
                "jwt RS256 without rsa_public_key -> 400")
    await fails(jwts.create(key="alice-rs-bad", algorithm="RS256", rsa_public_key="not a key"), 400,
                "invalid key", "jwt with a bad rsa_public_key -> 400")
    eq((await jwts.get("alice-iss")).id, j1.id, "consumer.jwts.get by key")
    upd = await jwts.update(j1.id, algorithm="HS512", secret="n3w")
    eq((upd["algorithm"], upd["secret"], upd["key"]), ("HS512", "n3w", "alice-iss"), "consumer.jwts.update (PATCH)")
    upd = await jwts.update_credentials(j3.id, data={"key": "alice-iss-3"})
    eq(upd["key"], "alice-iss-3", "consumer.jwts.update_credentials (form PATCH)")
    eq({j["key"] for j in await jwts.get_list()}, {"alice-iss", "alice-rsa", "alice-iss-3"}, "consumer.jwts.get_list")
    all_jwts = CrudComponent(cli, Auth, "jwts")
    eq((await all_jwts.get("alice-rsa")).id, j2.id, "GET /jwts/{key}")
    eq(await jwts.delete(j3.id), True, "consumer.jwts.delete")
    eq(len(await all_jwts.get_list()), 2, "GET /jwts after the delete")

    # ACLs: created under the consumer, read/updated/deleted through /acls/{id} (aio-kong's URLs).
    a1 = await alice.acls.create(group="admins")
    eq((a1["group"], a1["consumer"]), ("admins", {"id": alice.id}), "consumer.acls.create (POST /consumers/{id}/acls)")
    a2 = await alice.acls.create(group="ops", tags=["t"])
    await fails(alice.acls.create(group="admins"), 409, "UNIQUE violation", "acl duplicate group -> 409")
    await bob.acls.create(group="admins")
    eq({a["group"] for a in await alice.acls.get_list()}, {"admins", "ops"}, "consumer.acls.get_list")
    eq(len(await cli.acls.get_list()), 3, "acls.get_list (GET /acls)")
    eq((await cli.acls.get(a1.id))["group"], "admins", "acls.get (GET /acls/{id})")
    eq((await cli.acls.update(a2.id, group="devs"))["group"], "devs", "acls.update (PATCH /acls/{id})")
    eq(await cli.acls.delete(a2.id), True, "acls.delete")
    eq(await cli.acls.has(a2.id), False, "deleted acl is gone")

    # consumers.apply_json: a consumer with groups and a key-auth credential, then re-applied.
    carol = {"username": "carol", "groups": ["g1", "g2"], "auths": [{"type": "key-auth", "config": {"key": "carol-key"}}]}
    [c] = await cli.consumers.apply_json(carol)
    carol_entity = await cli.consumers.get("carol")
    eq(c["id"], carol_entity.id, "consumers.apply_json creates the consumer")
    eq({a["group"] for a in await carol_entity.acls.get_list()}, {"g1", "g2"}, "consumers.apply_json adds groups")
    eq([k["key"] for k in await carol_entity.keyauths.get_list()], ["carol-key"], "consumers.apply_json adds a key")
    await cli.consumers.apply_json({**carol, "groups": ["g2", "g3"]})
    eq({a["group"] for a in await carol_entity.acls.get_list()}, {"g2", "g3"}, "consumers.apply_json syncs groups")
    eq(len(await carol_entity.keyauths.get_list()), 1, "consumers.apply_json keeps one key")

    # Deleting a consumer deletes its credentials.
    eq(await cli.consumers.delete("alice"), True, "consumers.delete")
    eq(await cli.consumers.has("alice"), False, "deleted consumer is gone")
    eq(await all_keys.has("alice-key-1"), False, "its key-auth credentials are gone")
    eq(await all_jwts.has("alice-iss"), False, "its jwt credentials are gone")
    eq(await cli.acls.has(a1.id), False, "its acls are gone")
    eq(len(await cli.acls.get_list()), 3, "other consumers' acls remain (bob 1, carol 2)")


async def plugins(cli: Kong) -> None:
    """Plugin CRUD through aio-kong: key-auth (global and on a service), correlation-id (on a
    route), acl; read, update, list, apply_json, delete. A Kong Lua plugin gwctl never has
    (post-function) still surfaces Kong's 400 naming the plugin."""

    async def not_enabled(call: Awaitable[Any], name: str, step: str) -> None:
        body = await fails(call, 400, PLUGIN_NOT_ENABLED.format(name), step)
        field = str((body.get("fields") or {}).get("name", ""))
        check(body.get("code") == 2 and PLUGIN_NOT_ENABLED.format(name) in field,
              f"{step}: schema violation under fields.name", body)

    svc = await cli.services.create(name="svc-p", host="p.example")
    route = await svc.routes.create(name="r-p", paths=["/p"])
    eve = await cli.consumers.create(username="eve")

    # Create, with Kong's defaults filled in the answer.
    ka = await cli.plugins.create(name="key-auth")
    eq((ka["name"], ka["service"], ka["route"], ka["consumer"], ka["enabled"]),
       ("key-auth", None, None, None, True), "plugins.create key-auth (POST /plugins): global")
    eq({k: ka["config"][k] for k in ("key_names", "key_in_header", "key_in_query", "key_in_body",
                                     "hide_credentials", "run_on_preflight", "anonymous", "realm")},
       {"key_names": ["apikey"], "key_in_header": True, "key_in_query": True, "key_in_body": False,
        "hide_credentials": False, "run_on_preflight": True, "anonymous": None, "realm": None},
       "key-auth config defaults")
    # aio-kong resolves `config.anonymous` through GET /consumers/{name} before posting.
    svc_ka = await svc.plugins.create(name="key-auth", config={"key_names": ["x-key"], "anonymous": "eve"})
    eq((svc_ka["service"], svc_ka["config"]["key_names"], svc_ka["config"]["anonymous"]),
       ({"id": svc.id}, ["x-key"], eve.id),
       "service.plugins.create key-auth (POST /services/{id}/plugins), anonymous resolved by the client")
    corr = await route.plugins.create(name="correlation-id", config={"header_name": "X-Req"})
    eq((corr["route"], corr["config"]["header_name"], corr["config"]["generator"]),
       ({"id": route.id}, "X-Req", "uuid#counter"), "route.plugins.create correlation-id (POST /routes/{id}/plugins)")
    acl = await cli.plugins.create(name="acl", service={"id": svc.id}, config={"allow": ["g"]})
    eq((acl["service"], acl["config"]["allow"], acl["config"]["deny"], acl["config"]["hide_groups_header"]),
       ({"id": svc.id}, ["g"], None, False), "plugins.create acl scoped by body")

    # Refusals.
    await fails(cli.plugins.create(name="key-auth"), 409, "UNIQUE violation",
                "plugins.create of a second global key-auth -> 409")
    await fails(svc.plugins.create(name="acl", config={"allow": ["a"], "deny": ["b"]}), 400,
                "only one of these fields must be non-empty: 'config.allow', 'config.deny'",
                "acl with both allow and deny -> 400")
    await fails(route.plugins.create(name="acl"), 400,
                "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
                "acl with neither allow nor deny -> 400")
    await fails(eve.plugins.create(name="key-auth"), 400, "consumer: value must be null",
                "consumer.plugins.create key-auth (POST /consumers/{id}/plugins) -> 400")
    await fails(route.plugins.create(name="key-auth", config={"key_names": ["bad name"]}), 400,
                "bad header name 'bad name'", "key-auth with a bad key name -> 400")
    await not_enabled(cli.plugins.create(name="post-function", config={"access": ["return"]}),
                      "post-function", "plugins.create post-function -> not enabled")
    await fails(cli.plugins.apply_json([{"name": "post-function"}]), 400,
                PLUGIN_NOT_ENABLED.format("post-function"), "plugins.apply_json surfaces the 400")

    # Read.
    got = await cli.plugins.get(ka.id)
    eq((got["id"], got["config"]), (ka["id"], ka["config"]), "plugins.get (GET /plugins/{id})")
    eq((await svc.plugins.get(svc_ka.id))["config"]["key_names"], ["x-key"], "service.plugins.get")

    # Update: a config change merges into the stored config; enabled toggles.
    upd = await cli.plugins.update(svc_ka.id, config={"key_names": ["x-key", "apikey"], "hide_credentials": True})
    eq((upd["config"]["key_names"], upd["config"]["hide_credentials"], upd["config"]["anonymous"]),
       (["x-key", "apikey"], True, eve.id), "plugins.update config (PATCH /plugins/{id})")
    eq((await cli.plugins.get(svc_ka.id))["config"]["hide_credentials"], True, "the update is stored")
    upd = await cli.plugins.update(acl.id, config={"allow": ["g", "h"], "hide_groups_header": True})
    eq((upd["config"]["allow"], upd["config"]["hide_groups_header"]), (["g", "h"], True), "plugins.update acl")
    await fails(cli.plugins.update(acl.id, config={"deny": ["x"]}), 400,
                "only one of these fields must be non-empty", "plugins.update acl adding deny -> 400")
    eq((await cli.plugins.update(ka.id, enabled=False))["enabled"], False, "plugins.update enabled=false")

    # List.
    eq(sorted(p["name"] for p in await cli.plugins.get_full_list()),
       ["acl", "correlation-id", "key-auth", "key-auth"], "plugins.get_full_list (GET /plugins)")
    eq(sorted(p["name"] for p in await svc.plugins.get_list()), ["acl", "key-auth"], "service.plugins.get_list")
    eq([p["name"] for p in await route.plugins.get_list()], ["correlation-id"], "route.plugins.get_list")
    eq(await eve.plugins.get_list(), [], "consumer.plugins.get_list")

    # apply_json on the route: correlation-id updated, key-auth added.
    applied = await route.plugins.apply_json([
        {"name": "correlation-id", "config": {"header_name": "X-Trace", "echo_downstream": True}},
        {"name": "key-auth", "config": {"realm": "r"}},
    ])
    eq(sorted((p["name"], p["route"]["id"]) for p in applied),
       [("correlation-id", route.id), ("key-auth", route.id)], "route.plugins.apply_json")
    eq((await cli.plugins.get(corr.id))["config"]["header_name"], "X-Trace", "apply_json updated in place")

    # Delete.
    eq(await cli.plugins.delete(ka.id), True, "plugins.delete (DELETE /plugins/{id})")
    await fails(cli.plugins.get(ka.id), 404, "Not found", "plugins.get of the deleted plugin -> 404")
    missing = str(uuid.uuid4())
    await fails(cli.plugins.update(missing, enabled=False), 404, "Not found", "plugins.update of a missing plugin -> 404")
    eq(await cli.plugins.delete(missing), True, "plugins.delete of a missing plugin -> 204")
    eq(await cli.consumers.delete("eve"), True, "consumers.delete")
    eq(await cli.services.delete("svc-p"), True, "services.delete (cascade through its plugins and routes)")
    eq(await cli.plugins.get_full_list(), [], "service and route plugins went with them")
    await cli.plugins.create(name="correlation-id")
    eq(await cli.plugins.delete_all(), 1, "plugins.delete_all")


async def ca_certificates(cli: Kong) -> None:
    cas = CrudComponent(cli, KongEntity, "ca_certificates")
    pem = make_cert("gwctl test CA 1")
    ca = await cas.create(cert=pem, tags=["crud"])
    eq((ca["cert"].strip(), ca["tags"]), (pem.strip(), ["crud"]), "ca_certificates.create (POST /ca_certificates)")
    eq(ca["cert_digest"], digest(pem), "cert_digest is the SHA-256 of the DER")
    eq((await cas.get(ca.id))["cert_digest"], digest(pem), "ca_certificates.get")
    eq((await cas.update(ca.id, tags=["b"]))["tags"], ["b"], "ca_certificates.update tags (PATCH)")
    pem2 = make_cert("gwctl test CA 2")
    upd = await cas.update(ca.id, cert=pem2)
    eq((upd["cert"].strip(), upd["cert_digest"]), (pem2.strip(), digest(pem2)),
       "ca_certificates.update cert (PATCH recomputes cert_digest)")
    await fails(cas.create(cert=pem2), 409, "UNIQUE violation", "ca_certificates.create duplicate -> 409")
    await fails(cas.create(cert=make_cert("leaf", ca=False)), 400,
                "certificate does not appear to be a CA because it is missing the \"CA\" basic constraint",
                "ca_certificates.create of a non-CA certificate -> 400")
    await fails(cas.create(cert=make_cert("old", expired=True)), 400,
                "certificate expired, \"Not After\" time is in the past",
                "ca_certificates.create of an expired certificate -> 400")
    await fails(cas.create(cert=pem + pem2), 400, "please submit only one certificate at a time",
                "ca_certificates.create of two certificates -> 400")
    await fails(cas.create(cert="garbage"), 400, "invalid certificate", "ca_certificates.create of garbage -> 400")
    other = await cas.create(cert=pem)
    eq({c.id for c in await cas.get_list()}, {ca.id, other.id}, "ca_certificates.get_list")
    eq(await cas.delete(ca.id), True, "ca_certificates.delete")
    eq(await cas.has(ca.id), False, "deleted ca_certificate is gone")
    eq(await cas.delete_all(), 1, "ca_certificates.delete_all")


async def pagination(cli: Kong) -> None:
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            await cli.consumers.create(username=f"page-{i:03d}", tags=["paging"])

    await asyncio.gather(*(one(i) for i in range(PAGING_CONSUMERS)))
    ok(f"consumers.create x{PAGING_CONSUMERS}")
    total = len(await cli.consumers.get_list(size=1000))
    check(total >= PAGING_CONSUMERS, "consumers.get_list(size=1000) returns every consumer", total)
    eq(len(await cli.consumers.get_list()), 100, "consumers.get_list returns one page of 100")
    first = await cli.consumers.execute(cli.consumers.url)
    check(isinstance(first.get("next"), str) and first.get("offset"), "the first page has next and offset", first.get("next"))

    paged = [c.username async for c in cli.consumers.paginate()]
    eq((len(paged), len(set(paged))), (total, total), "consumers.paginate visits every consumer once")
    small = [c.id async for c in cli.consumers.paginate(size=7)]
    eq((len(small), len(set(small))), (total, total), "consumers.paginate(size=7) visits every consumer once")
    tagged = await cli.consumers.get_full_list(tags="paging")
    eq(
        sorted(c.username for c in tagged),
        [f"page-{i:03d}" for i in range(PAGING_CONSUMERS)],
        "consumers.get_full_list(tags=) pages through the tagged consumers",
    )
    # delete_all pages while it deletes (the offset points at a deleted row).
    eq(await cli.consumers.delete_all(), total, "consumers.delete_all")
    eq(await cli.consumers.get_full_list(), [], "no consumers left")


async def everything_empty(cli: Kong) -> None:
    for name in ["services", "routes", "upstreams", "consumers", "plugins", "key-auths", "jwts", "acls",
                 "ca_certificates"]:
        rows = await CrudComponent(cli, KongEntity, name).get_full_list()
        eq(rows, [], f"GET /{name} is empty at the end")


async def main(url: str) -> None:
    async with Kong(url=url) as cli:
        info = await cli.execute(cli.url)
        check(str(info.get("version", "")).startswith("3."), "GET / reports a Kong 3.x version", info.get("version"))
        await services_and_routes(cli)
        await upstreams_and_targets(cli)
        await consumers_and_credentials(cli)
        await plugins(cli)
        await ca_certificates(cli)
        await pagination(cli)
        await everything_empty(cli)
    print("kong_client_crud: all steps passed", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: kong_client_crud.py ADMIN_URL")
    try:
        asyncio.run(main(sys.argv[1].rstrip("/")))
    except Mismatch as e:
        sys.exit(f"MISMATCH: {e}")
    except KongResponseError as e:
        traceback.print_exc()
        sys.exit(f"MISMATCH: unexpected error response from the Admin API:\n{e}")
    except Exception as e:  # noqa: BLE001 - any failure is a test failure, with its traceback
        traceback.print_exc()
        sys.exit(f"FAILED: {type(e).__name__}: {e}")
