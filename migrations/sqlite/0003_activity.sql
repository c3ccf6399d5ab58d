-- vigil index, version 3 (SQLite): activity (src/history/activity.rs, docs/activity.md).
-- Times are capture times in µs since the Unix epoch, UTC.

-- One row per activity range: it opens at the first confirmed motion (end_us null while
-- open) and closes after the camera's merge gap of stillness (end_us = the last motion).
create table activity (
    id integer primary key,
    camera_id integer not null references camera (id),
    start_us integer not null,
    end_us integer,
    -- Highest score (largest moving blob, as a fraction of the picture) and when it was.
    peak real not null,
    peak_us integer not null,
    unique (camera_id, start_us),
    check (end_us is null or end_us >= start_us)
);

-- Motion levels, one row per camera and minute: `levels` holds 60 bytes, one per second,
-- the level × 250 (0 = still), 255 where the camera was not analysed.
create table motion_level (
    camera_id integer not null references camera (id),
    minute_us integer not null,
    levels blob not null,
    primary key (camera_id, minute_us)
);
