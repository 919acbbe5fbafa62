//! Action links: acknowledge or snooze a finding, or see everything that fires now, from
//! the message itself.
//!
//! A link is `<public_url>/a/<token>`: the token is 29 bytes in unpadded base64url (39
//! characters) — the action, its target (a finding's fingerprint), an expiry (Unix
//! seconds) and the first 16 bytes of HMAC-SHA256 over those, with a key from
//! `[http] link_key_file` or made once in the state directory. Short, because every entry
//! of a chat message carries two of them within the provider's byte budget.
//!
//! Opening a link changes nothing: it shows a page with a button (chat apps fetch links to
//! preview them, and a preview must not acknowledge anything). The button posts the same
//! token back; only then is the action checked again and recorded. A token that does not
//! verify, or that expired, gets a page that says so and changes nothing.

pub mod page;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use sentinel_actors::Fingerprint;

/// The key file made in the state directory when `[http] link_key_file` is not set.
pub const KEY_FILE: &str = "link.key";

/// How long a link works by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

const MAC_BYTES: usize = 16;
const TOKEN_BYTES: usize = 1 + 8 + 4 + MAC_BYTES;

/// What a link does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// No more repeats of the finding until it escalates or resolves.
    Ack,
    /// A silence of the finding for 1 hour, 1 day or 7 days (chosen on the page).
    Snooze,
    /// What fires now, everywhere (the live report).
    Report,
    /// The page of one notification as it was sent, kept by [`crate::archive`]; the
    /// token's target is the notification's id.
    Page,
}

impl Action {
    fn code(self) -> u8 {
        match self {
            Action::Ack => 1,
            Action::Snooze => 2,
            Action::Report => 3,
            Action::Page => 4,
        }
    }

    fn of(code: u8) -> Option<Action> {
        match code {
            1 => Some(Action::Ack),
            2 => Some(Action::Snooze),
            3 => Some(Action::Report),
            4 => Some(Action::Page),
            _ => None,
        }
    }
}

/// A verified link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub action: Action,
    /// The finding (zero for [`Action::Report`]; the notification's id for
    /// [`Action::Page`]).
    pub fingerprint: Fingerprint,
    pub expires: DateTime<Utc>,
}

/// Why a link is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token of ours at all (cut when copied, or made up).
    #[error("this link is incomplete or not one of powa-sentinel's")]
    Malformed,
    /// The signature does not match: changed by hand, or signed with another key.
    #[error(
        "this link's signature does not match: it was altered, or it was made with another key"
    )]
    Tampered,
    /// Too old.
    #[error("this link expired at {0}")]
    Expired(DateTime<Utc>),
}

/// Makes and checks links.
pub struct Links {
    base: String,
    key: Vec<u8>,
    ttl: chrono::Duration,
}

/// Equal when they make the same links (render options are compared).
impl PartialEq for Links {
    fn eq(&self, other: &Links) -> bool {
        self.base == other.base && self.key == other.key && self.ttl == other.ttl
    }
}

impl Eq for Links {}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("base", &self.base)
            .field("key", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Links {
    /// Links under `public_url` (a trailing `/` is dropped), signed with `key`, valid for
    /// `ttl` from the time they are made.
    pub fn new(public_url: &str, key: Vec<u8>, ttl: Duration) -> Links {
        Links {
            base: public_url.trim_end_matches('/').to_string(),
            key,
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(7)),
        }
    }

    fn mac(&self, body: &[u8]) -> [u8; MAC_BYTES] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(body);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    /// The token for `action` on `fingerprint`, made at `now`.
    pub fn token(&self, action: Action, fingerprint: Fingerprint, now: DateTime<Utc>) -> String {
        let expires = (now + self.ttl).timestamp().clamp(0, u32::MAX as i64) as u32;
        let mut b = Vec::with_capacity(TOKEN_BYTES);
        b.push(action.code());
        b.extend_from_slice(&fingerprint.0.to_be_bytes());
        b.extend_from_slice(&expires.to_be_bytes());
        let mac = self.mac(&b);
        b.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(b)
    }

    /// The link for `action` on `fingerprint`, made at `now`.
    pub fn url(&self, action: Action, fingerprint: Fingerprint, now: DateTime<Utc>) -> String {
        format!("{}/a/{}", self.base, self.token(action, fingerprint, now))
    }

    /// Checks `token` at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Token, LinkError> {
        let b = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| LinkError::Malformed)?;
        if b.len() != TOKEN_BYTES {
            return Err(LinkError::Malformed);
        }
        let (body, mac) = b.split_at(TOKEN_BYTES - MAC_BYTES);
        let mut check =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        check.update(body);
        // Constant time, on the truncated tag.
        check
            .verify_truncated_left(mac)
            .map_err(|_| LinkError::Tampered)?;
        let action = Action::of(body[0]).ok_or(LinkError::Malformed)?;
        let fp = u64::from_be_bytes(body[1..9].try_into().expect("8 bytes"));
        let secs = u32::from_be_bytes(body[9..13].try_into().expect("4 bytes"));
        let expires =
            DateTime::<Utc>::from_timestamp(secs as i64, 0).ok_or(LinkError::Malformed)?;
        if now >= expires {
            return Err(LinkError::Expired(expires));
        }
        Ok(Token {
            action,
            fingerprint: Fingerprint(fp),
            expires,
        })
    }
}

/// The links of `[http]`: `None` without `public_url`. The key is read (or made) now, so
/// that a key file that cannot be read stops the start with its name.
pub fn from_settings(
    http: &crate::http::HttpSettings,
    state_dir: Option<&Path>,
) -> Result<Option<Arc<Links>>, String> {
    let Some(url) = &http.public_url else {
        return Ok(None);
    };
    // With `[state] dsn` there is no directory: the key must be a file of its own
    // (config.rs says so), shared by every process that signs links.
    let key = match (http.link_key_file.as_deref(), state_dir) {
        (Some(file), _) => load_key(Some(file), Path::new(""))?,
        (None, Some(dir)) => load_key(None, dir)?,
        (None, None) => {
            return Err("http.public_url needs [state] dir or http.link_key_file".into())
        }
    };
    Ok(Some(Arc::new(Links::new(url, key, http.link_ttl))))
}

/// Reads the link key from `file`, or from `<state_dir>/link.key`, making that one (32
/// random bytes, hex, readable by the owner only) when it does not exist yet. Errors name
/// the file.
pub fn load_key(file: Option<&Path>, state_dir: &Path) -> Result<Vec<u8>, String> {
    let (path, make) = match file {
        Some(f) => (f.to_path_buf(), false),
        None => (state_dir.join(KEY_FILE), true),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim();
            if key.len() < 32 {
                return Err(format!(
                    "{}: the link key is shorter than 32 characters; write a long random one \
                     (e.g. `openssl rand -hex 32`)",
                    path.display()
                ));
            }
            Ok(key.as_bytes().to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && make => make_key(&path),
        Err(e) => Err(format!("cannot read the link key {}: {e}", path.display())),
    }
}

fn make_key(path: &PathBuf) -> Result<Vec<u8>, String> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| format!("no random source for the link key: {e}"))?;
    let key = hex::encode(raw);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts.open(path).and_then(|mut f| {
        use std::io::Write;
        f.write_all(key.as_bytes())?;
        f.sync_all()
    });
    match written {
        Ok(()) => Ok(key.into_bytes()),
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            load_key(Some(path), Path::new(""))
        }
        Err(e) => Err(format!("cannot write the link key {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).unwrap()
    }

    fn links() -> Links {
        Links::new(
            "https://sentinel.example.org/",
            b"k".repeat(32),
            DEFAULT_TTL,
        )
    }

    #[test]
    fn a_link_verifies_until_it_expires() {
        let l = links();
        let url = l.url(Action::Ack, Fingerprint(0xdead_beef), t0());
        let token = url.strip_prefix("https://sentinel.example.org/a/").unwrap();
        assert_eq!(token.len(), 39, "{url}");
        let v = l.verify(token, t0()).unwrap();
        assert_eq!(
            (v.action, v.fingerprint),
            (Action::Ack, Fingerprint(0xdead_beef))
        );
        assert_eq!(v.expires, t0() + chrono::Duration::days(7));
        assert_eq!(
            l.verify(token, t0() + chrono::Duration::days(7)),
            Err(LinkError::Expired(v.expires))
        );
    }

    #[test]
    fn a_changed_or_foreign_link_is_refused() {
        let l = links();
        let token = l.token(Action::Snooze, Fingerprint(42), t0());
        // Every single-character change is caught.
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for k in 0..token.len() {
            for c in alphabet.chars().step_by(7) {
                let mut t: Vec<char> = token.chars().collect();
                if t[k] == c {
                    continue;
                }
                t[k] = c;
                let t: String = t.into_iter().collect();
                assert!(l.verify(&t, t0()).is_err(), "{t} accepted");
            }
        }
        let other = Links::new("https://x", b"o".repeat(32), DEFAULT_TTL);
        assert_eq!(other.verify(&token, t0()), Err(LinkError::Tampered));
        assert_eq!(l.verify("abc", t0()), Err(LinkError::Malformed));
        assert_eq!(
            l.verify(&format!("{token}AA"), t0()),
            Err(LinkError::Malformed)
        );
        assert!(!format!("{l:?}").contains("kkkk"));
    }

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_key(None, dir.path()).unwrap();
        let b = load_key(None, dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let short = dir.path().join("short");
        std::fs::write(&short, "abc").unwrap();
        let e = load_key(Some(&short), dir.path()).unwrap_err();
        assert!(e.contains("short") && e.contains("32"), "{e}");
        let missing = dir.path().join("missing");
        assert!(load_key(Some(&missing), dir.path())
            .unwrap_err()
            .contains("cannot read"));
    }
}
