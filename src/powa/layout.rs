//! How one PoWA source is laid out, and the SQL that reads it.
//!
//! Statements and kcache (and most PoWA sources) share one storage model: a history table
//! with one row per key and coalesce range (`records`/`metrics` array, plus the field-wise
//! `mins_in_range`/`maxs_in_range`), and a current table with one row per key and
//! snapshot. A [`Layout`] names the tables, the key columns and the counter expressions
//! of one source for one PoWA version, and builds every statement the readers need from
//! that single description, so the naive, the fast and the incremental readers can never
//! disagree on what a counter is.

use super::discovery::PowaInfo;
use super::reader::COUNTERS;

/// Identity of one series in a source: `sub` tells the variants PoWA keeps apart under one
/// query (`toplevel` of statements in 4.2+, `top` of kcache in 4.1+); -1 when there are none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub dbid: u32,
    pub userid: u32,
    pub queryid: i64,
    pub sub: i8,
}

/// One source's tables and fields for one PoWA version.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Schema-qualified history table.
    history: String,
    /// Schema-qualified current table.
    current: String,
    /// The array column of the history table (`records`, or `metrics` for kcache).
    array: &'static str,
    /// The record column of the current table (`record`, or `metrics` for kcache).
    record: &'static str,
    /// Column carrying `sub`, if any.
    sub: Option<&'static str>,
    /// Expression of the `userid` slot for alias `{t}` (wait sampling has no user and
    /// puts its event there).
    userid: &'static str,
    /// Expression of the `dbid` slot for alias `{t}`.
    dbid: &'static str,
    /// Counter expressions over a record, with `{r}` standing for the record.
    fields: Vec<String>,
    /// Whether tables carry `srvid` (PoWA 4+).
    multi: bool,
}

impl Layout {
    /// The tables `powa_<table>` and `powa_<table>_current` of `info`'s schema, their
    /// points in `array` (history) and `record` (current), keyed by user and database;
    /// no fields yet.
    fn tables(info: &PowaInfo, table: &str, array: &'static str, record: &'static str) -> Self {
        let s = &info.schema;
        Layout {
            history: format!("{s}.powa_{table}"),
            current: format!("{s}.powa_{table}_current"),
            array,
            record,
            sub: None,
            userid: USERID,
            dbid: DBID,
            fields: Vec::new(),
            multi: info.version.multi_server(),
        }
    }

    /// pg_stat_statements counters, in [`COUNTERS`] order.
    pub fn statements(info: &PowaInfo) -> Layout {
        Layout {
            sub: info.has_toplevel.then_some("toplevel"),
            fields: COUNTERS.iter().map(|c| statement_field(info, c)).collect(),
            ..Layout::tables(info, "statements_history", "records", "record")
        }
    }

    /// pg_stat_kcache: user time, system time (s), reads, writes (bytes). Planning and
    /// execution are added (4.1+); `top` is kept apart as `sub` (4.1+).
    pub fn kcache(info: &PowaInfo) -> Layout {
        let split = (info.version.major, info.version.minor) >= (4, 1);
        Layout {
            sub: split.then_some("top"),
            fields: ["user_time", "system_time", "reads", "writes"]
                .iter()
                .map(|f| {
                    if split {
                        format!(
                            "coalesce(({{r}}).plan_{f}, 0)::float8 + coalesce(({{r}}).exec_{f}, 0)::float8"
                        )
                    } else {
                        format!("coalesce(({{r}}).{f}, 0)::float8")
                    }
                })
                .collect(),
            ..Layout::tables(info, "kcache_metrics", "metrics", "metrics")
        }
    }

    /// pg_wait_sampling samples per (query, event). There is no user: the `userid` slot
    /// of the key holds [`EVENT_ID`] of the event instead. Nor a stable database: PoWA
    /// files the same query's samples under its database in one snapshot and under 0 in
    /// the next (seen on 3.2 and 4.1), which would make every series sparse; the `dbid`
    /// slot is 0 and the rows of one snapshot are summed.
    pub fn wait_sampling(info: &PowaInfo) -> Layout {
        Layout {
            userid: EVENT_ID,
            dbid: "0::int8",
            fields: vec!["coalesce(({r}).count, 0)::float8".to_string()],
            ..Layout::tables(info, "wait_sampling_history", "records", "record")
        }
    }

    /// Event names behind the ids of [`Layout::wait_sampling`] rows touching [$1, $2]
    /// (history rows by range, without their arrays) or newer. Columns: id, type,
    /// event. `$3` is the srvid (PoWA 4+).
    pub fn wait_events_sql(&self) -> String {
        let w = "tstzrange($1::timestamptz, $2::timestamptz, '[]')";
        let id = |t: &str| EVENT_ID.replace("{t}", t);
        format!(
            "SELECT {hid}, h.event_type, h.event FROM {h} h WHERE {hs}h.coalesce_range && {w} \
             UNION \
             SELECT {cid}, c.event_type, c.event FROM {c} c WHERE {cs}(c.record).ts >= $1",
            hid = id("h"),
            cid = id("c"),
            h = self.history,
            c = self.current,
            hs = self.srv("h", 3),
            cs = self.srv("c", 3),
        )
    }

    /// Whether whole ranges may be taken from mins/maxs. Not when one series is spread
    /// over several history rows of a range (wait sampling: the folded databases), whose
    /// mins/maxs do not add up to the series'.
    pub fn ranges_summable(&self) -> bool {
        self.dbid == DBID
    }

    pub fn width(&self) -> usize {
        self.fields.len()
    }

    /// Key columns of table alias `t`: dbid, userid, queryid, sub.
    fn keys(&self, t: &str) -> String {
        self.key_exprs(t).join(", ")
    }

    fn key_exprs(&self, t: &str) -> [String; 4] {
        let sub = match self.sub {
            Some(c) => format!("{t}.{c}::int4::int2"),
            None => "(-1)::int2".to_string(),
        };
        [
            self.dbid.replace("{t}", t),
            self.userid.replace("{t}", t),
            format!("{t}.queryid"),
            sub,
        ]
    }

    /// [`Layout::keys`] named [`RUN_KEYS`], for [`Layout::runs_of`].
    fn named_keys(&self, t: &str) -> String {
        self.key_exprs(t)
            .iter()
            .zip(RUN_KEYS.split(", "))
            .map(|(k, n)| format!("{k} AS {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn fields_of(&self, rec: &str) -> String {
        self.fields
            .iter()
            .map(|f| f.replace("{r}", rec))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn null_fields(&self) -> String {
        vec!["NULL::float8"; self.fields.len()].join(", ")
    }

    /// `srvid = $n AND ` for alias `t`, or nothing before PoWA 4.
    fn srv(&self, t: &str, n: usize) -> String {
        if self.multi {
            format!("{t}.srvid = ${n} AND ")
        } else {
            String::new()
        }
    }

    pub fn multi(&self) -> bool {
        self.multi
    }

    /// The points with ts in [$1, $2] of the history ranges `overlap` picks (a condition
    /// on `h.coalesce_range`), arrays unnested, then the current rows with ts in [$1,
    /// $2]: the keys(4), then `columns(ts, fields)`. `$3` is the srvid (PoWA 4+).
    fn points_union(&self, overlap: &str, columns: impl Fn(&str, &str) -> String) -> String {
        let rec = format!("c.{}", self.record);
        format!(
            "SELECT {hk}, {hcols} \
             FROM {h} h CROSS JOIN LATERAL unnest(h.{a}) r \
             WHERE {hs}{overlap} AND (r).ts BETWEEN $1 AND $2 \
             UNION ALL \
             SELECT {ck}, {ccols} \
             FROM {c} c WHERE {cs}({rec}).ts BETWEEN $1 AND $2",
            hk = self.keys("h"),
            hcols = columns("(r).ts", &self.fields_of("r")),
            h = self.history,
            a = self.array,
            hs = self.srv("h", 3),
            ck = self.keys("c"),
            ccols = columns(&format!("({rec}).ts"), &self.fields_of(&rec)),
            c = self.current,
            cs = self.srv("c", 3),
        )
    }

    /// Every point with ts in [$1, $2], history arrays unnested: the reference reader.
    /// Columns: keys(4), ts, fields. `$3` is the srvid (PoWA 4+).
    pub fn points_sql(&self) -> String {
        let points = self.points_union(
            "h.coalesce_range && tstzrange($1::timestamptz, $2::timestamptz, '[]')",
            |ts, fields| format!("{ts}, {fields}"),
        );
        format!("SELECT * FROM ({points}) p ORDER BY 1, 2, 3, 4, 5")
    }

    /// Every point of one query with ts in [$1, $2], for a trend chart: queryid `$3`,
    /// database oid `$4`, srvid `$5` (PoWA 4+); history arrays unnested (one query's
    /// ranges are few). Columns: keys(4), ts, fields; ordered by key and time.
    pub fn query_points_sql(&self) -> String {
        let rec = format!("c.{}", self.record);
        let of = |t: &str| format!("{t}.queryid = $3 AND {t}.dbid::int8 = $4 AND ");
        format!(
            "SELECT * FROM ( \
               SELECT {hk}, (r).ts, {hf} \
               FROM {h} h CROSS JOIN LATERAL unnest(h.{a}) r \
               WHERE {hs}{hq}h.coalesce_range && tstzrange($1::timestamptz, $2::timestamptz, '[]') \
                 AND (r).ts BETWEEN $1 AND $2 \
               UNION ALL \
               SELECT {ck}, ({rec}).ts, {cf} \
               FROM {c} c WHERE {cs}{cq}({rec}).ts BETWEEN $1 AND $2) p \
             ORDER BY 1, 2, 3, 4, 5",
            hk = self.keys("h"),
            hf = self.fields_of("r"),
            h = self.history,
            a = self.array,
            hs = self.srv("h", 5),
            hq = of("h"),
            ck = self.keys("c"),
            cf = self.fields_of(&rec),
            c = self.current,
            cs = self.srv("c", 5),
            cq = of("c"),
        )
    }

    /// The fast window read: whole coalesce ranges inside [$1, $2] as one piece each
    /// (from `mins_in_range`/`maxs_in_range`, the array is not read); the in-window points
    /// of each boundary range collapsed into one run inside its own row (a sort of at most
    /// one range's points), and the current rows in the window into one run per key (see
    /// [`Layout::runs_of`]). So the repository sends a few rows per key, not the boundary
    /// points. Columns: keys(4), is_range, t0, t1, first fields, last fields, the values
    /// before resets (NULL for ranges), whether points share a timestamp (false for
    /// ranges). `$3` is the srvid (PoWA 4+).
    pub fn pieces_sql(&self) -> String {
        let w = "tstzrange($1::timestamptz, $2::timestamptz, '[]')";
        let rec = format!("c.{}", self.record);
        let boundary = self.runs_of(
            &format!(
                "SELECT (rec).ts AS ts, rec FROM (SELECT unnest(h.{a}) AS rec) u \
                 WHERE (rec).ts BETWEEN $1 AND $2",
                a = self.array,
            ),
            None,
        );
        let current = self.runs_of(
            &format!(
                "SELECT {ck}, ({rec}).ts AS ts, {rec} AS rec FROM {c} c \
                 WHERE {cs}({rec}).ts BETWEEN $1 AND $2",
                ck = self.named_keys("c"),
                c = self.current,
                cs = self.srv("c", 3),
            ),
            Some(RUN_KEYS),
        );
        format!(
            "SELECT * FROM ( \
               SELECT {hk}, true, lower(h.coalesce_range), upper(h.coalesce_range), {mins}, {maxs}, {nulls}, false \
               FROM {h} h WHERE {hs}h.coalesce_range <@ {w} \
               UNION ALL \
               SELECT {hk}, b.* FROM {h} h CROSS JOIN LATERAL ({boundary}) b \
               WHERE {hs}h.coalesce_range && {w} AND NOT h.coalesce_range <@ {w} AND b.t0 IS NOT NULL \
               UNION ALL \
               SELECT * FROM ({current}) r) p \
             ORDER BY 1, 2, 3, 4, 6",
            hk = self.keys("h"),
            mins = self.fields_of("h.mins_in_range"),
            maxs = self.fields_of("h.maxs_in_range"),
            nulls = self.null_fields(),
            h = self.history,
            hs = self.srv("h", 3),
        )
    }

    /// Collapses `points` (columns: the `group` columns, `ts`, and `rec`, a whole record)
    /// into one run per group: columns `group`, false (not a range), t0, t1, the first
    /// point's fields, the last point's, each field's sum over the resets of the value
    /// just before the reset, and whether two points share a timestamp.
    ///
    /// A series' increments between two resets add up to its last value minus its first
    /// (the counters only grow), and a reset (a drop of the first two fields, the rule of
    /// [`super::reader::SeriesAcc`]) counts the new value instead of the difference: so
    /// the sum of the increments is `last - first + Σ value before each reset`, with only
    /// the two reset fields compared per point and the others read at the two ends and at
    /// the resets. That is the assumption mins/maxs already rest on for whole ranges.
    /// Points sharing a timestamp (PoWA 4.1's `track = all` duplicates, which are summed
    /// first) are only flagged: the caller reads such a series point by point. Without
    /// `group`, one row, with NULLs when there is no point.
    ///
    /// Only the points that matter reach the aggregate: the first, the last, those just
    /// before a reset (told by comparing with the next point, so that no whole record is
    /// carried from row to row) and those sharing a timestamp with the one before; about
    /// two per run. Aggregating every point instead cost twice as much as the sort and
    /// the window together (measured on the reader bench's boundary ranges).
    fn runs_of(&self, points: &str, group: Option<&str>) -> String {
        let (g, by, part) = match group {
            Some(g) => (
                format!("{g}, "),
                format!(" GROUP BY {g}"),
                format!("PARTITION BY {g} "),
            ),
            None => (String::new(), String::new(), String::new()),
        };
        let field = |i: usize, rec: &str| self.fields[i].replace("{r}", rec);
        // The two fields a reset is told by, of the next point.
        let watched = self.fields.len().min(2);
        let pre = (0..watched)
            .map(|i| format!("n{i} < {}", field(i, "rec")))
            .collect::<Vec<_>>()
            .join(" OR ");
        let leads = (0..watched)
            .map(|i| format!("lead({}) OVER w AS n{i}", field(i, "rec")))
            .collect::<Vec<_>>()
            .join(", ");
        let each = |f: &dyn Fn(usize) -> String| {
            (0..self.fields.len()).map(f).collect::<Vec<_>>().join(", ")
        };
        format!(
            "SELECT {g}false AS is_range, t0, t1, {firsts}, {lasts}, {before}, dup \
             FROM (SELECT {g}min(ts) AS t0, max(ts) AS t1, \
                     (array_agg(rec) FILTER (WHERE prev_ts IS NULL))[1] AS fr, \
                     (array_agg(rec) FILTER (WHERE next_ts IS NULL))[1] AS lr, \
                     {sums}, coalesce(bool_or(prev_ts = ts), false) AS dup \
                   FROM (SELECT *, {pre} AS pre \
                         FROM (SELECT {g}ts, rec, lag(ts) OVER w AS prev_ts, \
                                 lead(ts) OVER w AS next_ts, {leads} \
                               FROM ({points}) x WINDOW w AS ({part}ORDER BY ts)) s1) s2 \
                   WHERE prev_ts IS NULL OR next_ts IS NULL OR prev_ts = ts OR pre{by}) s3",
            firsts = each(&|i| format!("{} AS f{i}", field(i, "fr"))),
            lasts = each(&|i| format!("{} AS l{i}", field(i, "lr"))),
            before = each(&|i| format!("coalesce(b{i}, 0) AS b{i}")),
            sums = each(&|i| format!("sum({}) FILTER (WHERE pre) AS b{i}", field(i, "rec"))),
        )
    }

    /// The runs of chosen coalesce ranges (each range's points collapsed as in
    /// [`Layout::runs_of`]), found by (queryid, dbid, userid, lower bound) in the parallel
    /// arrays $1..$4. Columns: keys(4), lower(range), then those of a run. `$5` is the
    /// srvid (PoWA 4+).
    ///
    /// Each range is collapsed on its own (a sort of at most one range's points, in
    /// memory), as the boundary ranges of [`Layout::pieces_sql`] are: one sort of all
    /// their points (after a server-wide reset, every key's last ranges) spilled to disk
    /// and took four times as long.
    pub fn ranges_sql(&self) -> String {
        let run = self.runs_of(
            &format!(
                "SELECT (rec).ts AS ts, rec FROM (SELECT unnest(h.{a}) AS rec) u",
                a = self.array,
            ),
            None,
        );
        format!(
            "SELECT {hk}, lower(h.coalesce_range), b.* \
             FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::timestamptz[]) AS w(queryid, dbid, userid, lo) \
             JOIN {h} h ON {hs}h.queryid = w.queryid AND h.dbid = w.dbid::oid AND {userid} \
               AND lower(h.coalesce_range) = w.lo \
             CROSS JOIN LATERAL ({run}) b \
             WHERE b.t0 IS NOT NULL \
             ORDER BY 1, 2, 3, 4, 5",
            hk = self.keys("h"),
            h = self.history,
            hs = self.srv("h", 5),
            userid = self.userid_is("h", "w"),
        )
    }

    /// The points with ts in [$1, $2] split at checkpoints, for the live window's boundary
    /// cache: every history range overlapping [$1, $2] unnested once, its points collapsed
    /// into one run per checkpoint bucket inside its own row (a sort of one range's points,
    /// as in [`Layout::pieces_sql`]), and the current rows into one run per key and
    /// bucket. A point's bucket is its place among the bucket starts `$3` (ascending: bucket
    /// i holds the points in [$3[i], $3[i+1]), see `width_bucket`), so the repository sends
    /// about one row per key and checkpoint, not the points. Columns: keys(4), bucket,
    /// false, then those of a run ([`Layout::runs_of`]: t0 is column 7). `$4` is the srvid
    /// (PoWA 4+).
    pub fn bucket_runs_sql(&self) -> String {
        let rec = format!("c.{}", self.record);
        let history = self.runs_of(
            &format!(
                "SELECT width_bucket((rec).ts, $3::timestamptz[]) AS k_b, (rec).ts AS ts, rec \
                 FROM (SELECT unnest(h.{a}) AS rec) u WHERE (rec).ts BETWEEN $1 AND $2",
                a = self.array,
            ),
            Some("k_b"),
        );
        let current = self.runs_of(
            &format!(
                "SELECT {ck}, width_bucket(({rec}).ts, $3::timestamptz[]) AS k_b, \
                        ({rec}).ts AS ts, {rec} AS rec FROM {c} c \
                 WHERE {cs}({rec}).ts BETWEEN $1 AND $2",
                ck = self.named_keys("c"),
                c = self.current,
                cs = self.srv("c", 4),
            ),
            Some(&format!("{RUN_KEYS}, k_b")),
        );
        format!(
            "SELECT * FROM ( \
               SELECT {hk}, b.* FROM {h} h CROSS JOIN LATERAL ({history}) b \
               WHERE {hs}h.coalesce_range && tstzrange($1::timestamptz, $2::timestamptz, '[]') \
               UNION ALL \
               SELECT * FROM ({current}) r) p \
             ORDER BY 1, 2, 3, 4, 7",
            hk = self.keys("h"),
            h = self.history,
            hs = self.srv("h", 4),
        )
    }

    /// The newest upper bound of the history ranges overlapping [$1, $2] (NULL when none
    /// does): how far the ranges around a window start reach. `$3` is the srvid (PoWA 4+).
    pub fn reach_sql(&self) -> String {
        format!(
            "SELECT max(upper(h.coalesce_range)) FROM {h} h \
             WHERE {hs}h.coalesce_range && tstzrange($1::timestamptz, $2::timestamptz, '[]')",
            h = self.history,
            hs = self.srv("h", 3),
        )
    }

    /// Every point with ts in [$4, $5] of the queries in the parallel arrays $1..$3
    /// (queryid, dbid, userid): the reference read, for the few keys whose pieces the
    /// fast read cannot chain. Columns: keys(4), ts, fields. `$6` is the srvid (PoWA 4+).
    pub fn key_points_sql(&self) -> String {
        let rec = format!("c.{}", self.record);
        let keys = "unnest($1::int8[], $2::int8[], $3::int8[]) AS w(queryid, dbid, userid)";
        format!(
            "SELECT * FROM ( \
               SELECT {hk}, (r).ts, {hf} FROM {keys} \
               JOIN {h} h ON {hs}h.queryid = w.queryid AND h.dbid = w.dbid::oid AND {hu} \
               CROSS JOIN LATERAL unnest(h.{a}) r \
               WHERE h.coalesce_range && tstzrange($4::timestamptz, $5::timestamptz, '[]') \
                 AND (r).ts BETWEEN $4 AND $5 \
               UNION ALL \
               SELECT {ck}, ({rec}).ts, {cf} FROM {keys} \
               JOIN {c} c ON {cs}c.queryid = w.queryid AND c.dbid = w.dbid::oid AND {cu} \
               WHERE ({rec}).ts BETWEEN $4 AND $5) p \
             ORDER BY 1, 2, 3, 4, 5",
            hk = self.keys("h"),
            hf = self.fields_of("r"),
            h = self.history,
            hs = self.srv("h", 6),
            hu = self.userid_is("h", "w"),
            a = self.array,
            ck = self.keys("c"),
            cf = self.fields_of(&rec),
            c = self.current,
            cs = self.srv("c", 6),
            cu = self.userid_is("c", "w"),
        )
    }

    /// `t`'s user id equals `w.userid`: as an oid for a plain column (the history
    /// indexes can serve it), as the number it is for a computed id (wait events).
    fn userid_is(&self, t: &str, w: &str) -> String {
        if self.userid == USERID {
            format!("{t}.userid = {w}.userid::oid")
        } else {
            format!("{} = {w}.userid", self.userid.replace("{t}", t))
        }
    }

    /// Points newer than $1: the current rows and, when `with_history` (PoWA coalesced
    /// since the cursor), the history ranges that reach past it. Columns: keys(4), ts,
    /// fields. `$2` is the srvid (PoWA 4+).
    pub fn since_sql(&self, with_history: bool) -> String {
        let history = if with_history {
            format!(
                "SELECT {hk}, (r).ts, {hf} \
                 FROM {h} h CROSS JOIN LATERAL unnest(h.{a}) r \
                 WHERE {hs}h.coalesce_range && tstzrange($1::timestamptz, NULL, '(]') AND (r).ts > $1 \
                 UNION ALL ",
                hk = self.keys("h"),
                hf = self.fields_of("r"),
                h = self.history,
                a = self.array,
                hs = self.srv("h", 2),
            )
        } else {
            String::new()
        };
        format!(
            "SELECT * FROM ({history} \
               SELECT {ck}, (c.{rc}).ts, {cf} FROM {c} c WHERE {cs}(c.{rc}).ts > $1) p \
             ORDER BY 1, 2, 3, 4, 5",
            ck = self.keys("c"),
            rc = self.record,
            cf = self.fields_of(&format!("c.{}", self.record)),
            c = self.current,
            cs = self.srv("c", 2),
        )
    }
}

const USERID: &str = "{t}.userid::int8";

/// The key columns of [`Layout::runs_of`]'s points.
const RUN_KEYS: &str = "k_db, k_user, k_q, k_sub";
const DBID: &str = "{t}.dbid::int8";

/// A wait event as a number, so that it fits the numeric key of a series.
pub const EVENT_ID: &str = "(hashtext({t}.event_type || ':' || {t}.event)::int8 & 4294967295)";

/// The expression of one statements counter, by what this PoWA version calls it.
fn statement_field(info: &PowaInfo, counter: &str) -> String {
    let candidates: &[&str] = match counter {
        "exec_time_ms" => &["total_exec_time", "total_time"],
        "blk_read_time_ms" => &["blk_read_time", "shared_blk_read_time"],
        "blk_write_time_ms" => &["blk_write_time", "shared_blk_write_time"],
        "plan_time_ms" => &["total_plan_time"],
        other => std::slice::from_ref(match other {
            "calls" => &"calls",
            "rows" => &"rows",
            "shared_blks_hit" => &"shared_blks_hit",
            "shared_blks_read" => &"shared_blks_read",
            "shared_blks_dirtied" => &"shared_blks_dirtied",
            "shared_blks_written" => &"shared_blks_written",
            "local_blks_hit" => &"local_blks_hit",
            "local_blks_read" => &"local_blks_read",
            "temp_blks_read" => &"temp_blks_read",
            "temp_blks_written" => &"temp_blks_written",
            "plans" => &"plans",
            "wal_bytes" => &"wal_bytes",
            _ => &"",
        }),
    };
    for c in candidates {
        if info.has_field(c) {
            return format!("coalesce(({{r}}).{c}, 0)::float8");
        }
    }
    "0::float8".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::powa::discovery::PowaVersion;

    fn info(v: &str, fields: &[&str], toplevel: bool) -> PowaInfo {
        PowaInfo {
            version: PowaVersion::parse(v).unwrap(),
            schema: "\"powa\"".into(),
            statement_fields: fields.iter().map(|s| s.to_string()).collect(),
            has_toplevel: toplevel,
            servers: vec![],
            database: "powa".into(),
        }
    }

    #[test]
    fn fields_follow_the_version() {
        let v3 = info("3.2.0", &["calls", "total_time"], false);
        let l = Layout::statements(&v3);
        assert!(!l.multi());
        let sql = l.points_sql();
        assert!(sql.contains("(r).total_time"));
        assert!(!sql.contains("srvid"));
        assert!(sql.contains("(-1)::int2"));

        let v5 = info("5.0.1", &["calls", "total_exec_time"], true);
        let l = Layout::statements(&v5);
        let sql = l.pieces_sql();
        assert!(sql.contains("h.toplevel::int4::int2"));
        assert!(sql.contains("h.srvid = $3"));
        assert!(sql.contains("(h.mins_in_range).total_exec_time"));

        let k = Layout::kcache(&info("4.1.4", &[], false));
        assert_eq!(k.width(), 4);
        let sql = k.since_sql(true);
        assert!(sql.contains("h.top::int4::int2"));
        assert!(sql.contains("(c.metrics).plan_user_time"));
        assert!(sql.contains("h.srvid = $2"));
        let k3 = Layout::kcache(&info("3.2.0", &[], false));
        let r3 = k3.ranges_sql();
        assert!(r3.contains("(lr).reads"), "the last point's fields");
        assert!(
            r3.contains("n0 < coalesce((rec).user_time, 0)::float8"),
            "a reset: a drop of user time"
        );

        let w = Layout::wait_sampling(&info("4.1.4", &[], false));
        assert!(w.points_sql().contains("hashtext(h.event_type"));
        assert!(w.wait_events_sql().contains("c.srvid = $3"));
    }
}
