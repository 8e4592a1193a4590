-- gwctl's Postgres store, version 1.
--
-- One table per Kong entity kind. `data` holds the whole entity in Kong's JSON shape (what the
-- Admin API returns); the other columns exist for the database to enforce what Kong enforces:
-- primary keys, unique endpoint keys (409 on conflict), foreign keys with Kong's delete rules
-- (routes RESTRICT a service's deletion; everything else cascades).
--
-- `gwctl_changes` is the change log every node follows: each admin write inserts one row in the
-- same transaction and sends `NOTIFY gwctl_changes, '<id>'`; nodes also poll it as a safety net.

CREATE TABLE services (
    id          uuid PRIMARY KEY,
    name        text UNIQUE,
    data        jsonb NOT NULL
);

CREATE TABLE routes (
    id          uuid PRIMARY KEY,
    name        text UNIQUE,
    service_id  uuid REFERENCES services (id) ON DELETE RESTRICT,
    data        jsonb NOT NULL
);
CREATE INDEX routes_service_id_idx ON routes (service_id);

CREATE TABLE upstreams (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    data        jsonb NOT NULL
);

CREATE TABLE targets (
    id          uuid PRIMARY KEY,
    upstream_id uuid NOT NULL REFERENCES upstreams (id) ON DELETE CASCADE,
    target      text NOT NULL,
    data        jsonb NOT NULL,
    CONSTRAINT targets_upstream_id_target_key UNIQUE (upstream_id, target)
);

CREATE TABLE consumers (
    id          uuid PRIMARY KEY,
    username    text UNIQUE,
    custom_id   text UNIQUE,
    data        jsonb NOT NULL
);

CREATE TABLE plugins (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    instance_name text UNIQUE,
    route_id      uuid REFERENCES routes (id) ON DELETE CASCADE,
    service_id    uuid REFERENCES services (id) ON DELETE CASCADE,
    consumer_id   uuid REFERENCES consumers (id) ON DELETE CASCADE,
    data          jsonb NOT NULL
);
-- One instance per (name, route, service, consumer); NULL scopes compare equal here.
CREATE UNIQUE INDEX plugins_scope_key ON plugins (
    name,
    COALESCE(route_id, '00000000-0000-0000-0000-000000000000'),
    COALESCE(service_id, '00000000-0000-0000-0000-000000000000'),
    COALESCE(consumer_id, '00000000-0000-0000-0000-000000000000')
);
CREATE INDEX plugins_route_id_idx ON plugins (route_id);
CREATE INDEX plugins_service_id_idx ON plugins (service_id);
CREATE INDEX plugins_consumer_id_idx ON plugins (consumer_id);

CREATE TABLE keyauth_credentials (
    id          uuid PRIMARY KEY,
    consumer_id uuid NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
    key         text NOT NULL UNIQUE,
    data        jsonb NOT NULL
);
CREATE INDEX keyauth_credentials_consumer_id_idx ON keyauth_credentials (consumer_id);

CREATE TABLE jwt_secrets (
    id          uuid PRIMARY KEY,
    consumer_id uuid NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
    key         text NOT NULL UNIQUE,
    data        jsonb NOT NULL
);
CREATE INDEX jwt_secrets_consumer_id_idx ON jwt_secrets (consumer_id);

CREATE TABLE acls (
    id          uuid PRIMARY KEY,
    consumer_id uuid NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
    "group"     text NOT NULL,
    data        jsonb NOT NULL,
    CONSTRAINT acls_consumer_id_group_key UNIQUE (consumer_id, "group")
);

CREATE TABLE ca_certificates (
    id          uuid PRIMARY KEY,
    cert_digest text UNIQUE,
    data        jsonb NOT NULL
);

CREATE TABLE gwctl_changes (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    entity_id   uuid,
    op          text NOT NULL,
    node_id     uuid,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gwctl_changes_at_idx ON gwctl_changes (at);
