//! Links to powa-web: the page of an entry's query, database or server.

use sentinel_actors::Insight;

use super::RenderOptions;

/// Longest link kept (longer ones are left out rather than cut).
pub(crate) const MAX_URL_BYTES: usize = 400;

/// The powa-web page of an insight: its query's page when it is about one query, else
/// its database's, else its server's. None without a `powa_web_url` for its repository
/// or without the server's id.
///
/// URL shapes from powa-web's own routes (`QueryOverview`, `DatabaseOverview`,
/// `ServerOverview`): `/server/<srvid>/database/<dbname>/query/<queryid>/overview`,
/// `/server/<srvid>/database/<dbname>/overview`, `/server/<srvid>/overview/`.
pub fn powa_web_link(i: &Insight, opts: &RenderOptions) -> Option<String> {
    let base = opts.powa_web.get(i.label("repository")?)?;
    let base = base.trim_end_matches('/');
    let srvid: i64 = i.label("srvid")?.parse().ok()?;
    let db = i
        .label("database")
        .filter(|d| !d.is_empty() && !d.starts_with("oid "));
    let queryid = i
        .label("queryid")
        .or_else(|| {
            i.label("queryids")
                .and_then(|q| q.split(',').next())
                .filter(|q| !q.starts_with('+'))
        })
        .and_then(|q| q.trim().parse::<i64>().ok());
    Some(match (db, queryid) {
        (Some(d), Some(q)) => format!(
            "{base}/server/{srvid}/database/{}/query/{q}/overview",
            url_segment(d)
        ),
        (Some(d), None) => format!("{base}/server/{srvid}/database/{}/overview", url_segment(d)),
        (None, _) => format!("{base}/server/{srvid}/overview/"),
    })
}

/// A path segment, percent-encoded: only unreserved characters stay, so a database name
/// can neither leave the segment nor end a markdown link.
fn url_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a configured base URL is one a link may carry: http(s), no whitespace, nothing
/// that could end a markdown link or start markup.
pub fn valid_base_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://"))
        && u.len() > "https://".len()
        && !u
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "()<>[]`\"'*|{}^".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixture::{notification, slow_query};
    use crate::render::{render, Style};

    #[test]
    fn entries_link_to_powa_web_pages_with_safe_segments() {
        let mut opts = RenderOptions::default();
        let mut i = slow_query(1, "SELECT 1");
        i.labels.insert("srvid".into(), "3".into());
        assert_eq!(powa_web_link(&i, &opts), None, "no powa_web_url");
        opts.powa_web
            .insert("main".into(), "https://powa.example.com/p/".into());
        assert_eq!(
            powa_web_link(&i, &opts).as_deref(),
            Some("https://powa.example.com/p/server/3/database/app/query/-123451/overview")
        );
        i.labels.insert("database".into(), "a b)](x".into());
        i.labels.remove("queryid");
        assert_eq!(
            powa_web_link(&i, &opts).as_deref(),
            Some("https://powa.example.com/p/server/3/database/a%20b%29%5D%28x/overview")
        );
        i.labels.remove("database");
        assert_eq!(
            powa_web_link(&i, &opts).as_deref(),
            Some("https://powa.example.com/p/server/3/overview/")
        );
        // In markdown a link, in text the address; the queryid line goes (the link has it).
        i.labels.insert("database".into(), "app".into());
        i.labels.insert("queryid".into(), "42".into());
        let n = notification(vec![i]);
        let md = &render(&n, Style::Markdown, 4000, &opts)[0];
        assert!(
            md.contains(
                ">[powa-web](https://powa.example.com/p/server/3/database/app/query/42/overview)"
            ),
            "{md}"
        );
        assert!(!md.contains("queryid"), "{md}");
        let text = &render(&n, Style::Text, 2000, &opts)[0];
        assert!(
            text.contains(
                "  powa-web: https://powa.example.com/p/server/3/database/app/query/42/overview"
            ),
            "{text}"
        );
        assert!(!valid_base_url("powa.example.com"));
        assert!(!valid_base_url("https://x/(y)"));
        assert!(valid_base_url("http://127.0.0.1:8888/powa"));
    }
}
