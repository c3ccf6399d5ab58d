-- vigil index, version 1 (SQLite). Times are µs since the Unix epoch, UTC (suffix _us).

-- One row per camera name ever configured.
create table camera (
    id integer primary key,
    -- The configured name: 1-64 of [A-Za-z0-9_-].
    name text not null unique check (length(name) between 1 and 64)
);

-- One row per segment file pair (<start_us>.h264 + .idx).
create table recording (
    id integer primary key,
    camera_id integer not null references camera (id),
    -- Path of the .h264 relative to the data directory: <camera>/<day>/<start_us>.h264.
    path text not null unique,
    -- Capture time of the first access unit.
    start_us integer not null,
    -- Capture time just past the last access unit (last pts + its duration). While open:
    -- the start (unknown yet).
    end_us integer not null,
    -- Size of the .h264 in bytes and number of access units, once closed.
    bytes integer not null default 0 check (bytes >= 0),
    frames integer not null default 0 check (frames >= 0),
    -- RFC 6381 codec string (e.g. avc1.42c01f), picture size, and the parameter sets of
    -- the first keyframe, once closed.
    codec text not null default '',
    width integer not null default 0,
    height integer not null default 0,
    sps blob,
    pps blob,
    -- 'open' while the writer may append; 'closed' after fsync of both files and the dir.
    state text not null check (state in ('open', 'closed')),
    check (end_us >= start_us)
);
create index recording_camera_start on recording (camera_id, start_us);
create index recording_open on recording (state) where state = 'open';

-- Deletions in flight: a row here means "unlink this file pair, then drop this row".
create table garbage (
    path text primary key,
    camera_id integer not null references camera (id)
);
