//! WeCom's callback protocol ("接收消息与事件") for the buttons of application cards:
//! a person taps Acknowledge or Snooze on a `template_card` of a `wecom_app` channel,
//! WeCom posts the event to `<public address>/wecom/<channel>`, the daemon records the
//! action in its state (as the action links do) and answers with the button's new text
//! ("Acknowledged by zhangsan"), which WeCom shows on the card at once.
//!
//! The protocol, as WeCom specifies it (the "WXBizMsgCrypt" scheme):
//! - The application's callback settings give a **Token** and an **EncodingAESKey** (43
//!   characters; base64 of the 32-byte AES key without its final `=`).
//! - Every request carries `msg_signature`, `timestamp` and `nonce` in its query:
//!   `msg_signature` = SHA-1 (hex) of the four strings token, timestamp, nonce and the
//!   encrypted text, **sorted** and concatenated. A request whose signature does not
//!   match is refused (403) and changes nothing.
//! - The encrypted text is base64 of AES-256-CBC (IV = the key's first 16 bytes) over
//!   16 random bytes, the message's length (4 bytes, big-endian), the message, and the
//!   receiver id (the corpid), padded PKCS#7-style to a multiple of **32** bytes (not 16).
//!   A message for another corpid is refused.
//! - `GET` verifies the URL when the callback is set up: `echostr` is such an encrypted
//!   text; the answer is its plain text. `POST` carries XML whose `Encrypt` element is
//!   the encrypted event; the answer is empty, or an encrypted XML reply
//!   (`Encrypt`, `MsgSignature`, `TimeStamp`, `Nonce`).
//!
//! The crypto and the parsing are pure functions here (time and randomness passed in);
//! the HTTP shell below records the action as the action pages do
//! ([`crate::actions::page::perform`]).

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest as _, Sha1};

use crate::secret::Secret;

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

/// WeCom pads to multiples of this many bytes.
const PAD_BLOCK: usize = 32;

/// Why a callback is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The signature does not match: not from WeCom, or set up with another token.
    #[error("the signature does not match (not from WeCom, or another Token)")]
    BadSignature,
    /// Encrypted for another company.
    #[error("the message is for another receiver ({0}), not this corpid")]
    WrongReceiver(String),
    /// Not the protocol's shape.
    #[error("malformed callback: {0}")]
    Malformed(&'static str),
}

/// The callback settings of one application, ready to check and answer requests.
#[derive(Clone)]
pub struct Callback {
    token: Secret,
    key: [u8; 32],
    receiver: String,
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("receiver", &self.receiver)
            .finish_non_exhaustive()
    }
}

/// The AES key of an EncodingAESKey, or why it is not one.
pub fn aes_key(encoding_aes_key: &str) -> Result<[u8; 32], String> {
    let k = encoding_aes_key.trim();
    if k.len() != 43 {
        return Err(format!(
            "must be the 43 characters WeCom shows as EncodingAESKey, not {}",
            k.len()
        ));
    }
    // WeCom's keys are 43 random characters: the last one may carry bits past the 32
    // bytes, which WeCom's own SDKs ignore, so a strict decoder would refuse real keys.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let bytes = lenient
        .decode(format!("{k}="))
        .map_err(|_| "is not an EncodingAESKey (letters and digits, 43 characters)".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "does not decode to a 32-byte key".to_string())
}

/// SHA-1 (hex) of `parts` sorted and concatenated.
fn sorted_sha1(parts: &mut [&str]) -> String {
    parts.sort_unstable();
    let mut h = Sha1::new();
    for p in parts.iter() {
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Callback {
    /// `receiver` is the corpid the messages must be for.
    pub fn new(token: Secret, key: [u8; 32], receiver: &str) -> Callback {
        Callback {
            token,
            key,
            receiver: receiver.to_string(),
        }
    }

    /// The signature of `encrypted` at `timestamp` with `nonce`.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypted: &str) -> String {
        sorted_sha1(&mut [self.token.expose(), timestamp, nonce, encrypted])
    }

    /// Checks the signature (in constant time), then decrypts: the plain message.
    pub fn open(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypted: &str,
    ) -> Result<String, CallbackError> {
        let want = self.signature(timestamp, nonce, encrypted);
        let same = want.len() == signature.len()
            && want
                .bytes()
                .zip(signature.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
                == 0;
        if !same {
            return Err(CallbackError::BadSignature);
        }
        self.decrypt(encrypted)
    }

    fn decrypt(&self, encrypted: &str) -> Result<String, CallbackError> {
        let mut buf = STANDARD
            .decode(encrypted.trim())
            .map_err(|_| CallbackError::Malformed("the encrypted text is not base64"))?;
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err(CallbackError::Malformed(
                "the encrypted text is not whole AES blocks",
            ));
        }
        let iv: [u8; 16] = self.key[..16].try_into().expect("16 bytes");
        let plain = Dec::new(&self.key.into(), &iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| CallbackError::Malformed("AES decryption failed"))?;
        let pad = *plain.last().expect("not empty") as usize;
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(CallbackError::Malformed("bad padding"));
        }
        let plain = &plain[..plain.len() - pad];
        if plain.len() < 20 {
            return Err(CallbackError::Malformed("too short"));
        }
        let len = u32::from_be_bytes(plain[16..20].try_into().expect("4 bytes")) as usize;
        let rest = &plain[20..];
        if len > rest.len() {
            return Err(CallbackError::Malformed("the length field is past the end"));
        }
        let (msg, receiver) = rest.split_at(len);
        let receiver = String::from_utf8_lossy(receiver);
        if receiver != self.receiver {
            return Err(CallbackError::WrongReceiver(receiver.into_owned()));
        }
        String::from_utf8(msg.to_vec()).map_err(|_| CallbackError::Malformed("not UTF-8"))
    }

    /// `msg` encrypted for WeCom, with `random` as its 16 leading bytes.
    pub fn encrypt(&self, msg: &str, random: [u8; 16]) -> String {
        let mut plain = Vec::with_capacity(msg.len() + 64);
        plain.extend_from_slice(&random);
        plain.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        plain.extend_from_slice(msg.as_bytes());
        plain.extend_from_slice(self.receiver.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let len = plain.len();
        let iv: [u8; 16] = self.key[..16].try_into().expect("16 bytes");
        let out = Enc::new(&self.key.into(), &iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut plain, len)
            .expect("a whole number of blocks");
        STANDARD.encode(out)
    }

    /// The encrypted reply carrying `msg`.
    pub fn reply(&self, msg: &str, timestamp: &str, nonce: &str, random: [u8; 16]) -> String {
        let encrypted = self.encrypt(msg, random);
        let signature = self.signature(timestamp, nonce, &encrypted);
        format!(
            "<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt><MsgSignature><![CDATA[{signature}]]></MsgSignature>\
             <TimeStamp>{}</TimeStamp><Nonce><![CDATA[{}]]></Nonce></xml>",
            xml_text(timestamp),
            cdata(nonce)
        )
    }
}

/// The text of the first element `name` of `xml`, CDATA or not.
pub fn element(xml: &str, name: &str) -> Option<String> {
    text_of(&roxmltree::Document::parse(xml).ok()?, name)
}

/// The text of the first element `name` of a parsed document.
fn text_of(doc: &roxmltree::Document<'_>, name: &str) -> Option<String> {
    let node = doc.descendants().find(|n| n.has_tag_name(name))?;
    Some(node.text().unwrap_or_default().to_string())
}

/// `s` safe inside a CDATA section.
fn cdata(s: &str) -> String {
    s.replace("]]>", "]]]]><![CDATA[>")
}

/// `s` safe as XML text.
fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What a tap on a card's button asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tap {
    Ack,
    /// A snooze of this many hours.
    Snooze(u32),
}

/// The key of a button: what it does to which finding (`ack-<fp>`, `snooze-24h-<fp>`).
pub fn button_key(tap: Tap, fingerprint: u64) -> String {
    match tap {
        Tap::Ack => format!("ack-{fingerprint:016x}"),
        Tap::Snooze(h) => format!("snooze-{h}h-{fingerprint:016x}"),
    }
}

/// The tap and finding of a button key, if it is one of ours.
pub fn parse_key(key: &str) -> Option<(Tap, u64)> {
    let (what, fp) = key.rsplit_once('-')?;
    let fp = u64::from_str_radix(fp, 16).ok()?;
    let tap = match what {
        "ack" => Tap::Ack,
        s => Tap::Snooze(s.strip_prefix("snooze-")?.strip_suffix('h')?.parse().ok()?),
    };
    Some((tap, fp))
}

/// A button tapped on a card (`template_card_event`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardTap {
    /// Who tapped: their WeCom user id.
    pub user: String,
    pub tap: Tap,
    pub fingerprint: u64,
    /// The application (our address) and the user, for the reply's To/From.
    pub to: String,
}

/// The tap an event's XML carries; None for any other message or event (they are
/// answered with nothing).
pub fn card_tap(xml: &str) -> Option<CardTap> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let get = |name: &str| text_of(&doc, name);
    if get("MsgType")? != "event" || get("Event")? != "template_card_event" {
        return None;
    }
    let (tap, fingerprint) = parse_key(&get("EventKey")?)?;
    Some(CardTap {
        user: get("FromUserName")?,
        tap,
        fingerprint,
        to: get("ToUserName").unwrap_or_default(),
    })
}

/// The reply that changes the tapped button's text to `text` (`update_button`).
pub fn update_button(tap: &CardTap, text: &str, now_secs: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[{}]]></FromUserName>\
         <CreateTime>{now_secs}</CreateTime><MsgType><![CDATA[update_button]]></MsgType>\
         <Button><ReplaceName><![CDATA[{}]]></ReplaceName></Button></xml>",
        cdata(&tap.user),
        cdata(&tap.to),
        cdata(text)
    )
}

/// The callbacks of the `wecom_app` channels that have one, by channel name, and where
/// the actions are recorded.
#[derive(Clone, Debug, Default)]
pub struct Callbacks {
    pub by_channel: std::collections::BTreeMap<String, Callback>,
    /// Where the gate's state is (`None`: in memory, nowhere to record an action).
    pub state: Option<crate::gate::store::Location>,
}

/// The query of every callback request.
#[derive(Debug, serde::Deserialize)]
pub struct Signed {
    msg_signature: String,
    timestamp: String,
    nonce: String,
    /// URL verification only.
    echostr: Option<String>,
}

/// Registers `GET` and `POST /wecom/{channel}`.
pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::web;
    cfg.route("/wecom/{channel}", web::get().to(verify_url))
        .route("/wecom/{channel}", web::post().to(event));
}

fn refused(e: &CallbackError) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Forbidden()
        .content_type("text/plain; charset=utf-8")
        .body(format!("refused: {e}; nothing was changed\n"))
}

fn callback_of<'a>(data: &'a Callbacks, channel: &str) -> Option<&'a Callback> {
    data.by_channel.get(channel)
}

/// WeCom's check of the URL when the callback is saved: the plain `echostr`.
async fn verify_url(
    channel: actix_web::web::Path<String>,
    q: actix_web::web::Query<Signed>,
    data: actix_web::web::Data<Callbacks>,
) -> actix_web::HttpResponse {
    let Some(cb) = callback_of(&data, &channel) else {
        return actix_web::HttpResponse::NotFound().finish();
    };
    let Some(echo) = &q.echostr else {
        return refused(&CallbackError::Malformed("no echostr"));
    };
    match cb.open(&q.msg_signature, &q.timestamp, &q.nonce, echo) {
        Ok(plain) => actix_web::HttpResponse::Ok()
            .content_type("text/plain")
            .body(plain),
        Err(e) => refused(&e),
    }
}

/// What a tap does, in words for the button (short: WeCom shows a few characters).
fn done_text(tap: Tap, user: &str) -> String {
    match tap {
        Tap::Ack => format!("Acknowledged by {user}"),
        Tap::Snooze(h) if h.is_multiple_of(24) => format!("Snoozed {} d by {user}", h / 24),
        Tap::Snooze(h) => format!("Snoozed {h} h by {user}"),
    }
}

/// The snooze length the action pages know for `hours` ("1h", "1d", "7d").
fn snooze_label(hours: u32) -> String {
    if hours.is_multiple_of(24) {
        format!("{}d", hours / 24)
    } else {
        format!("{hours}h")
    }
}

/// An event: a tap on a card's button is recorded, and the button says so.
async fn event(
    channel: actix_web::web::Path<String>,
    q: actix_web::web::Query<Signed>,
    body: String,
    data: actix_web::web::Data<Callbacks>,
) -> actix_web::HttpResponse {
    use crate::actions::{page, Action, Token};
    let Some(cb) = callback_of(&data, &channel).cloned() else {
        return actix_web::HttpResponse::NotFound().finish();
    };
    let Some(encrypted) = element(&body, "Encrypt") else {
        return refused(&CallbackError::Malformed("no Encrypt element"));
    };
    let xml = match cb.open(&q.msg_signature, &q.timestamp, &q.nonce, &encrypted) {
        Ok(x) => x,
        Err(e) => return refused(&e),
    };
    let Some(tap) = card_tap(&xml) else {
        // Another message or event: nothing to do, nothing to answer.
        return actix_web::HttpResponse::Ok().finish();
    };
    let Some(state) = data.state.clone() else {
        return actix_web::HttpResponse::ServiceUnavailable()
            .body("no [state] dir or dsn: nowhere to record the action\n");
    };
    let now = chrono::Utc::now();
    let token = Token {
        action: match tap.tap {
            Tap::Ack => Action::Ack,
            Tap::Snooze(_) => Action::Snooze,
        },
        fingerprint: sentinel_actors::Fingerprint(tap.fingerprint),
        expires: now,
    };
    let form = page::Form {
        who: format!("{} (WeCom)", tap.user),
        why: String::new(),
        duration: match tap.tap {
            Tap::Snooze(h) => snooze_label(h),
            Tap::Ack => String::new(),
        },
    };
    let recorded = actix_web::web::block(move || {
        let title = page::title_of(&state, token.fingerprint);
        page::perform(&state, &token, &form, title, now)
    })
    .await;
    match recorded {
        Ok(Ok(_)) => {
            let mut random = [0u8; 16];
            let _ = getrandom::fill(&mut random);
            let reply = update_button(&tap, &done_text(tap.tap, &tap.user), now.timestamp());
            actix_web::HttpResponse::Ok()
                .content_type("application/xml")
                .body(cb.reply(&reply, &q.timestamp, &q.nonce, random))
        }
        Ok(Err(e)) => actix_web::HttpResponse::ServiceUnavailable()
            .body(format!("the action could not be recorded: {e}\n")),
        Err(e) => actix_web::HttpResponse::ServiceUnavailable().body(format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY43: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn cb() -> Callback {
        Callback::new(Secret::new("tok3n"), aes_key(KEY43).unwrap(), "ww1234")
    }

    #[test]
    fn keys_are_checked() {
        assert!(aes_key(KEY43).is_ok());
        assert!(aes_key("short").unwrap_err().contains("43"));
        assert!(aes_key(&"!".repeat(43)).is_err());
    }

    #[test]
    fn sealed_messages_open_only_with_their_signature_and_receiver() {
        let c = cb();
        let enc = c.encrypt("<xml>héllo</xml>", [7; 16]);
        let sig = c.signature("1700000000", "n0nce", &enc);
        assert_eq!(
            c.open(&sig, "1700000000", "n0nce", &enc).unwrap(),
            "<xml>héllo</xml>"
        );
        assert_eq!(
            c.open(&sig, "1700000001", "n0nce", &enc),
            Err(CallbackError::BadSignature)
        );
        let other = Callback::new(Secret::new("tok3n"), aes_key(KEY43).unwrap(), "ww9999");
        let sig = other.signature("1", "n", &enc);
        assert_eq!(
            other.open(&sig, "1", "n", &enc),
            Err(CallbackError::WrongReceiver("ww1234".into()))
        );
        // Every length pads to whole 32-byte blocks (a full block of padding included).
        for n in 0..70 {
            let m = "x".repeat(n);
            let e = c.encrypt(&m, [1; 16]);
            assert_eq!(STANDARD.decode(&e).unwrap().len() % 32, 0);
            assert_eq!(c.decrypt(&e).unwrap(), m);
        }
    }

    #[test]
    fn taps_are_read_from_events_and_keys_round_trip() {
        for (tap, fp) in [
            (Tap::Ack, 0u64),
            (Tap::Snooze(24), u64::MAX),
            (Tap::Snooze(1), 42),
        ] {
            assert_eq!(parse_key(&button_key(tap, fp)), Some((tap, fp)));
        }
        assert_eq!(parse_key("ack-zz"), None);
        assert_eq!(parse_key("delete-00"), None);
        let xml = format!(
            "<xml><ToUserName><![CDATA[ww1234]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>\
             <CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[template_card_event]]></Event>\
             <EventKey><![CDATA[{}]]></EventKey><TaskId><![CDATA[t1]]></TaskId><AgentID>5</AgentID></xml>",
            button_key(Tap::Ack, 7)
        );
        let t = card_tap(&xml).unwrap();
        assert_eq!(
            (t.user.as_str(), t.tap, t.fingerprint),
            ("zhangsan", Tap::Ack, 7)
        );
        let reply = update_button(&t, "Acknowledged by zhangsan ]]> x", 9);
        assert_eq!(
            element(&reply, "ReplaceName").as_deref(),
            Some("Acknowledged by zhangsan ]]> x")
        );
        assert_eq!(card_tap("<xml><MsgType>text</MsgType></xml>"), None);
        assert_eq!(card_tap("not xml"), None);
    }
}
