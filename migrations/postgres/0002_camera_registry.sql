-- vigil index, version 2 (PostgreSQL). Same columns as sqlite/0002_camera_registry.sql; see there for
-- what each means: the camera registry (src/registry/, docs/cameras.md).
-- A camera row exists for every name that ever recorded or was configured; these columns
-- say whether it is configured now and with what settings. Times are µs since the epoch.

-- Who defines the camera: 'config' (a [[cameras]] table of vigil.toml, loaded at start and
-- on SIGHUP), 'api' (added through POST /api/cameras), or null when no longer configured
-- (its recordings were kept when it was deleted).
alter table camera add column defined_in text check (defined_in in ('config', 'api'));
-- The camera's settings as a JSON object of the [[cameras]] keys (for 'config' cameras, as
-- last read from the file).
alter table camera add column settings text;
-- For 'config' cameras: a JSON object of the keys changed through the API that apply on top
-- of the file (enabled, record, title, group). Null when none.
alter table camera add column overrides text;
-- Order on pages: cameras are listed by position, then name.
alter table camera add column position bigint not null default 0;
-- When the settings last changed.
alter table camera add column updated_us bigint not null default 0;
