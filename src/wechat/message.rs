//! Step two of parsing: the raw tree into typed messages (reference §3). Every `MsgType` and
//! every event becomes a variant with typed fields; anything WeChat adds later lands in an
//! `Unknown` variant that keeps every raw field, so a new type never becomes an error page.
//!
//! Field rules: text fields absent from the XML read as empty (WeChat omits empty elements in
//! places); numbers must parse when present and, where the platform always sends them, be
//! present, never read as a silent zero. A malformed header (`ToUserName`, `FromUserName`,
//! `CreateTime`, `MsgType`, `MsgId`) is a [`ParseError`] (HTTP 400). A known type whose body
//! fields do not parse (a `NaN` latitude, say) is not refused: it degrades to the `Unknown`
//! variant with every raw field, and [`Message::degraded`] says why, so a change in WeChat's
//! formats never turns into an error page or a lost event.

use std::str::FromStr;

use super::ids::{MediaId, MsgId, OpenId, TemplateId};
use super::xml::{self, Element, XmlError};

/// Why a body could not become a [`Message`]. Every variant answers HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is not acceptable XML.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// A field every message of this kind carries is absent.
    #[error("missing field <{0}>")]
    Missing(&'static str),
    /// A field is present but not of its type (a number that is not a number).
    #[error("field <{field}> has an invalid value {value:?}")]
    Invalid {
        /// The XML element name.
        field: &'static str,
        /// The offending value (truncated).
        value: String,
    },
}

/// An inbound message or event, typed. `raw` keeps every field exactly as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `ToUserName`: the account's original id (`gh_…`).
    pub to: String,
    /// `FromUserName`: the sender's OpenID.
    pub from: OpenId,
    /// `CreateTime`: seconds since the epoch. i64: values past 2^32 are accepted.
    pub create_time: i64,
    /// `MsgId` of a user message (events carry none). u64: values exceed 2^53.
    pub msg_id: Option<MsgId>,
    /// The typed body.
    pub kind: MessageKind,
    /// The whole message as received, unknown elements included.
    pub raw: Element,
    /// Set when this is a known type whose fields did not parse: `kind` is then the `Unknown`
    /// variant (for events, [`Event::Unknown`]) and this is the reason.
    pub degraded: Option<ParseError>,
}

/// The body of a message, by `MsgType`.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageKind {
    /// `text`.
    Text(Text),
    /// `image`.
    Image(Image),
    /// `voice`.
    Voice(Voice),
    /// `video`.
    Video(Video),
    /// `shortvideo`.
    ShortVideo(Video),
    /// `location`: a location the user sent as a message.
    Location(Location),
    /// `link`.
    Link(Link),
    /// `miniprogrampage`: a mini-program card.
    MiniProgramPage(MiniProgramPage),
    /// `event`.
    Event(Event),
    /// Any other `MsgType`, with every raw field.
    Unknown {
        /// `MsgType` as sent.
        msg_type: String,
        /// The message's fields as received.
        fields: Element,
    },
}

/// `MsgType=text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// `Content`, as sent (control characters included).
    pub content: String,
    /// `MsgDataId`: the article the message was sent from, if any.
    pub msg_data_id: Option<u64>,
    /// `Idx`: the article's position in that push.
    pub idx: Option<u32>,
    /// `bizmsgmenuid`: the menu option tapped, when the text came from a message menu.
    pub biz_msg_menu_id: Option<String>,
}

/// `MsgType=image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `PicUrl`.
    pub pic_url: String,
    /// `MediaId`.
    pub media_id: MediaId,
}

/// `MsgType=voice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voice {
    /// `MediaId`.
    pub media_id: MediaId,
    /// `Format`: `amr` or `speex`.
    pub format: String,
    /// `Recognition`: the speech-to-text result, when recognition is enabled.
    pub recognition: Option<String>,
}

/// `MsgType=video` and `MsgType=shortvideo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    /// `MediaId`.
    pub media_id: MediaId,
    /// `ThumbMediaId`.
    pub thumb_media_id: MediaId,
}

/// `MsgType=location`.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// `Location_X`: latitude.
    pub latitude: f64,
    /// `Location_Y`: longitude.
    pub longitude: f64,
    /// `Scale`: the map zoom level.
    pub scale: u32,
    /// `Label`: the place's description.
    pub label: String,
}

/// `MsgType=link`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// `Title`.
    pub title: String,
    /// `Description`.
    pub description: String,
    /// `Url`.
    pub url: String,
}

/// `MsgType=miniprogrampage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiniProgramPage {
    /// `AppId`: the mini program's app id.
    pub app_id: String,
    /// `Title`.
    pub title: String,
    /// `PagePath`.
    pub page_path: String,
    /// `ThumbUrl`.
    pub thumb_url: String,
    /// `ThumbMediaId`.
    pub thumb_media_id: MediaId,
}

/// `MsgType=event`, by `Event` (matched case-insensitively; the original spelling stays in
/// [`Message::raw`] and [`Message::event_name`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `subscribe`: a new follower, possibly through a parameter QR code.
    Subscribe(Subscribe),
    /// `unsubscribe`. Can arrive more than once for one user.
    Unsubscribe,
    /// `SCAN`: an existing follower scanned a parameter QR code.
    Scan(Scan),
    /// `LOCATION`: a periodic location report (up to every 5 s).
    Location(LocationReport),
    /// `CLICK`: a menu button with a key.
    Click {
        /// `EventKey`: the button's key.
        key: String,
    },
    /// `VIEW`: a menu button opening a URL.
    View {
        /// `EventKey`: the URL.
        url: String,
        /// `MenuId`: the personalised menu's id, when one is used.
        menu_id: Option<i64>,
    },
    /// `view_miniprogram`: a menu button opening a mini program page.
    ViewMiniprogram {
        /// `EventKey`: the page path.
        page_path: String,
        /// `MenuId`.
        menu_id: Option<i64>,
    },
    /// `scancode_push`: the menu's scanner, result pushed to the page.
    ScancodePush(ScanCode),
    /// `scancode_waitmsg`: the menu's scanner, waiting for our message.
    ScancodeWaitmsg(ScanCode),
    /// `pic_sysphoto`: the menu's camera.
    PicSysphoto(SendPics),
    /// `pic_photo_or_album`: camera or album.
    PicPhotoOrAlbum(SendPics),
    /// `pic_weixin`: WeChat's album.
    PicWeixin(SendPics),
    /// `location_select`: the menu's location picker.
    LocationSelect(LocationSelect),
    /// `TEMPLATESENDJOBFINISH`: the outcome of a template message.
    TemplateSendJobFinish(TemplateSendJobFinish),
    /// `MASSSENDJOBFINISH`: the outcome of a mass send.
    MassSendJobFinish(MassSendJobFinish),
    /// `PUBLISHJOBFINISH`: the outcome of a publication.
    PublishJobFinish(PublishJobFinish),
    /// `subscribe_msg_popup_event`: the user answered a subscription-message prompt.
    SubscribeMsgPopup(Vec<SubscribeMsgPopupItem>),
    /// `subscribe_msg_change_event`: the user changed subscription-message settings.
    SubscribeMsgChange(Vec<SubscribeMsgChangeItem>),
    /// `subscribe_msg_sent_event`: outcome of subscription messages.
    SubscribeMsgSent(Vec<SubscribeMsgSentItem>),
    /// `kf_create_session`: a customer-service agent took the conversation.
    KfCreateSession {
        /// `KfAccount`.
        kf_account: String,
    },
    /// `kf_close_session`: the agent closed the conversation.
    KfCloseSession {
        /// `KfAccount`.
        kf_account: String,
    },
    /// `kf_switch_session`: the conversation moved between agents.
    KfSwitchSession {
        /// `FromKfAccount`.
        from_kf_account: String,
        /// `ToKfAccount`.
        to_kf_account: String,
    },
    /// Any other event, with every raw field.
    Unknown {
        /// `Event` as sent.
        event: String,
        /// The message's fields as received.
        fields: Element,
    },
}

/// `subscribe`. A plain follow has no scene; a scan-to-follow has `EventKey = qrscene_<scene>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// `EventKey` as sent (`qrscene_42`, `last_trade_no_…`), if non-empty.
    pub event_key: Option<String>,
    /// The QR scene without its `qrscene_` prefix. `None` for a plain follow and for the
    /// `last_trade_no_…` key WeChat Pay sends, which is not a scene.
    pub scene: Option<String>,
    /// `Ticket` of the QR code, on scan-to-follow.
    pub ticket: Option<String>,
}

/// `SCAN`: a follower scanned a parameter QR code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// `EventKey`: the scene id or string (no prefix here).
    pub scene: String,
    /// `Ticket`.
    pub ticket: Option<String>,
}

/// `LOCATION` event.
#[derive(Debug, Clone, PartialEq)]
pub struct LocationReport {
    /// `Latitude`.
    pub latitude: f64,
    /// `Longitude`.
    pub longitude: f64,
    /// `Precision`.
    pub precision: f64,
}

/// `scancode_push`, `scancode_waitmsg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanCode {
    /// `EventKey`: the menu button's key.
    pub key: String,
    /// `ScanCodeInfo/ScanType`: `qrcode`, `barcode`, ….
    pub scan_type: String,
    /// `ScanCodeInfo/ScanResult`.
    pub scan_result: String,
}

/// `pic_sysphoto`, `pic_photo_or_album`, `pic_weixin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendPics {
    /// `EventKey`: the menu button's key.
    pub key: String,
    /// `SendPicsInfo/Count`.
    pub count: u32,
    /// `SendPicsInfo/PicList/item/PicMd5Sum`, one per picture.
    pub pic_md5_sums: Vec<String>,
}

/// `location_select`.
#[derive(Debug, Clone, PartialEq)]
pub struct LocationSelect {
    /// `EventKey`: the menu button's key.
    pub key: String,
    /// `SendLocationInfo/Location_X`: latitude.
    pub latitude: f64,
    /// `SendLocationInfo/Location_Y`: longitude.
    pub longitude: f64,
    /// `SendLocationInfo/Scale`.
    pub scale: u32,
    /// `SendLocationInfo/Label`.
    pub label: String,
    /// `SendLocationInfo/Poiname`: the point of interest; `None` when absent or empty.
    pub poiname: Option<String>,
}

/// The delivery status in `TEMPLATESENDJOBFINISH` (`Status`), parsed once here; spacing and
/// case vary in the wild (`failed:user block`, `failed: system failed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendStatus {
    /// `success`.
    Success,
    /// `failed:user block`: the user refused messages from the account.
    UserBlock,
    /// `failed: system failed`.
    SystemFailed,
    /// Any other status, as sent (trimmed).
    Unknown(String),
}

impl SendStatus {
    /// The status a `Status` value names.
    pub fn parse(s: &str) -> Self {
        let norm: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        match norm.as_str() {
            "success" => Self::Success,
            "failed:userblock" => Self::UserBlock,
            "failed:systemfailed" => Self::SystemFailed,
            _ => Self::Unknown(s.trim().to_owned()),
        }
    }

    /// WeChat's spelling of the status (for an unknown one, the value as sent).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Success => "success",
            Self::UserBlock => "failed:user block",
            Self::SystemFailed => "failed: system failed",
            Self::Unknown(s) => s,
        }
    }

    /// Whether the message reached the user.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success)
    }
}

impl std::fmt::Display for SendStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `TEMPLATESENDJOBFINISH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSendJobFinish {
    /// `MsgID` (capital D): the `msgid` the send call returned.
    pub msg_id: MsgId,
    /// `Status`.
    pub status: SendStatus,
}

/// `MASSSENDJOBFINISH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MassSendJobFinish {
    /// `MsgID`.
    pub msg_id: MsgId,
    /// `Status`: `send success`, `send fail`, `err(10001)`, ….
    pub status: String,
    /// `TotalCount`.
    pub total_count: u64,
    /// `FilterCount`: after filtering out users who blocked the account.
    pub filter_count: u64,
    /// `SentCount`.
    pub sent_count: u64,
    /// `ErrorCount`.
    pub error_count: u64,
    /// `CopyrightCheckResult`, when originality was checked.
    pub copyright_check: Option<CopyrightCheck>,
    /// `ArticleUrlResult`.
    pub article_urls: Vec<ArticleUrl>,
}

/// `CopyrightCheckResult` of a mass send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyrightCheck {
    /// `Count`.
    pub count: u32,
    /// `CheckState`: 1 passed, 2 failed-but-sent, 3 failed.
    pub check_state: i32,
    /// `ResultList/item`.
    pub items: Vec<CopyrightCheckItem>,
}

/// One `ResultList/item` of a copyright check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyrightCheckItem {
    /// `ArticleIdx`.
    pub article_idx: u32,
    /// `UserDeclareState`.
    pub user_declare_state: i32,
    /// `AuditState`.
    pub audit_state: i32,
    /// `OriginalArticleUrl`.
    pub original_article_url: String,
    /// `OriginalArticleType`.
    pub original_article_type: i32,
    /// `CanReprint`.
    pub can_reprint: bool,
    /// `NeedReplaceContent`.
    pub need_replace_content: bool,
    /// `NeedShowReprintSource`.
    pub need_show_reprint_source: bool,
}

/// One `ArticleUrlResult/ResultList/item`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArticleUrl {
    /// `ArticleIdx`.
    pub article_idx: u32,
    /// `ArticleUrl`.
    pub url: String,
}

/// `PUBLISHJOBFINISH` (`PublishEventInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishJobFinish {
    /// `publish_id`.
    pub publish_id: u64,
    /// `publish_status`: 0 success, 1 publishing, 2+ failures.
    pub publish_status: i32,
    /// `article_id`, on success.
    pub article_id: Option<String>,
    /// `article_detail/item`: the published articles.
    pub articles: Vec<PublishedArticle>,
    /// `fail_idx`: the failing articles' positions (repeated element).
    pub fail_idx: Vec<u32>,
}

/// One `article_detail/item`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedArticle {
    /// `idx`.
    pub idx: u32,
    /// `article_url`.
    pub url: String,
}

/// One `SubscribeMsgPopupEvent/List`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeMsgPopupItem {
    /// `TemplateId`.
    pub template_id: TemplateId,
    /// `SubscribeStatusString`: `accept` or `reject`.
    pub status: String,
    /// `PopupScene`: 1 from the web, 2 from a message, …
    pub popup_scene: Option<u32>,
}

/// One `SubscribeMsgChangeEvent/List`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeMsgChangeItem {
    /// `TemplateId`.
    pub template_id: TemplateId,
    /// `SubscribeStatusString`.
    pub status: String,
}

/// One `SubscribeMsgSentEvent/List`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeMsgSentItem {
    /// `TemplateId`.
    pub template_id: TemplateId,
    /// `MsgID`.
    pub msg_id: MsgId,
    /// `ErrorCode`: 0 on success.
    pub error_code: i64,
    /// `ErrorStatus`.
    pub error_status: String,
}

impl Message {
    /// Parses an inbound message body (plain XML, or the decrypted inner XML).
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        Self::from_element(xml::parse(body)?)
    }

    /// Converts an already parsed raw tree.
    pub fn from_element(raw: Element) -> Result<Self, ParseError> {
        let f = Fields(&raw);
        let to = f.required_str("ToUserName")?;
        let from = OpenId(f.required_str("FromUserName")?);
        let create_time = f.num("CreateTime")?;
        let msg_type = f.required_str("MsgType")?;
        // Events carry no message id; `MsgID` in a job-finish event belongs to the event.
        let (msg_id, typed) = if msg_type.eq_ignore_ascii_case("event") {
            let name = f.required_str("Event")?;
            let typed = parse_event(&name, &f).map(MessageKind::Event).map_err(|e| {
                let fields = raw.clone();
                (
                    MessageKind::Event(Event::Unknown {
                        event: name,
                        fields,
                    }),
                    e,
                )
            });
            (None, typed)
        } else {
            let msg_id = f.opt_num("MsgId")?.map(MsgId);
            let typed = parse_kind(&msg_type, &f).map_err(|e| {
                let fields = raw.clone();
                (
                    MessageKind::Unknown {
                        msg_type: msg_type.clone(),
                        fields,
                    },
                    e,
                )
            });
            (msg_id, typed)
        };
        let (kind, degraded) = match typed {
            Ok(kind) => (kind, None),
            Err((unknown, reason)) => (unknown, Some(reason)),
        };
        Ok(Self {
            to,
            from,
            create_time,
            msg_id,
            kind,
            raw,
            degraded,
        })
    }

    /// `MsgType` as sent.
    pub fn msg_type(&self) -> &str {
        self.raw.text_of("MsgType").unwrap_or_default().trim()
    }

    /// `Event` as sent (original case), for events.
    pub fn event_name(&self) -> Option<&str> {
        match self.kind {
            MessageKind::Event(_) => self.raw.text_of("Event").map(str::trim),
            _ => None,
        }
    }

    /// The event, for events.
    pub fn event(&self) -> Option<&Event> {
        match &self.kind {
            MessageKind::Event(e) => Some(e),
            _ => None,
        }
    }

    /// The event's key, normalised: a subscribe's QR scene without its prefix (so one filter
    /// matches both `subscribe` via a QR code and a later `SCAN` of it), otherwise `EventKey`
    /// as sent. `None` for messages and for events without a key.
    pub fn event_key(&self) -> Option<&str> {
        match &self.kind {
            MessageKind::Event(Event::Subscribe(s)) => {
                s.scene.as_deref().or(s.event_key.as_deref())
            }
            MessageKind::Event(_) => self
                .raw
                .text_of("EventKey")
                .map(str::trim)
                .filter(|k| !k.is_empty()),
            _ => None,
        }
    }

    /// The text of a `text` message.
    pub fn content(&self) -> Option<&str> {
        match &self.kind {
            MessageKind::Text(t) => Some(&t.content),
            _ => None,
        }
    }

    /// The `MediaId` of an image, voice, video or short video.
    pub fn media_id(&self) -> Option<&MediaId> {
        match &self.kind {
            MessageKind::Image(i) => Some(&i.media_id),
            MessageKind::Voice(v) => Some(&v.media_id),
            MessageKind::Video(v) | MessageKind::ShortVideo(v) => Some(&v.media_id),
            _ => None,
        }
    }

    /// Whether this is a user's message (not an event). WeChat allows at most one news article
    /// in the reply to these.
    pub fn is_user_message(&self) -> bool {
        !matches!(self.kind, MessageKind::Event(_))
    }
}

impl Event {
    /// The event's canonical name, lower case (`subscribe`, `scan`, `templatesendjobfinish`);
    /// for an unknown event, its name as sent.
    pub fn name(&self) -> &str {
        match self {
            Self::Subscribe(_) => "subscribe",
            Self::Unsubscribe => "unsubscribe",
            Self::Scan(_) => "scan",
            Self::Location(_) => "location",
            Self::Click { .. } => "click",
            Self::View { .. } => "view",
            Self::ViewMiniprogram { .. } => "view_miniprogram",
            Self::ScancodePush(_) => "scancode_push",
            Self::ScancodeWaitmsg(_) => "scancode_waitmsg",
            Self::PicSysphoto(_) => "pic_sysphoto",
            Self::PicPhotoOrAlbum(_) => "pic_photo_or_album",
            Self::PicWeixin(_) => "pic_weixin",
            Self::LocationSelect(_) => "location_select",
            Self::TemplateSendJobFinish(_) => "templatesendjobfinish",
            Self::MassSendJobFinish(_) => "masssendjobfinish",
            Self::PublishJobFinish(_) => "publishjobfinish",
            Self::SubscribeMsgPopup(_) => "subscribe_msg_popup_event",
            Self::SubscribeMsgChange(_) => "subscribe_msg_change_event",
            Self::SubscribeMsgSent(_) => "subscribe_msg_sent_event",
            Self::KfCreateSession { .. } => "kf_create_session",
            Self::KfCloseSession { .. } => "kf_close_session",
            Self::KfSwitchSession { .. } => "kf_switch_session",
            Self::Unknown { event, .. } => event,
        }
    }
}

/// Every `MsgType` huixin parses, lower case, as [`MessageKind::msg_type`] names them.
pub const MSG_TYPES: [&str; 9] = [
    "text",
    "image",
    "voice",
    "video",
    "shortvideo",
    "location",
    "link",
    "miniprogrampage",
    "event",
];

/// Every event huixin parses, as [`Event::name`] names it.
pub const EVENT_NAMES: [&str; 22] = [
    "subscribe",
    "unsubscribe",
    "scan",
    "location",
    "click",
    "view",
    "view_miniprogram",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
    "templatesendjobfinish",
    "masssendjobfinish",
    "publishjobfinish",
    "subscribe_msg_popup_event",
    "subscribe_msg_change_event",
    "subscribe_msg_sent_event",
    "kf_create_session",
    "kf_close_session",
    "kf_switch_session",
];

impl MessageKind {
    /// The canonical `MsgType`, lower case; for an unknown type, the type as sent.
    pub fn msg_type(&self) -> &str {
        match self {
            Self::Text(_) => "text",
            Self::Image(_) => "image",
            Self::Voice(_) => "voice",
            Self::Video(_) => "video",
            Self::ShortVideo(_) => "shortvideo",
            Self::Location(_) => "location",
            Self::Link(_) => "link",
            Self::MiniProgramPage(_) => "miniprogrampage",
            Self::Event(_) => "event",
            Self::Unknown { msg_type, .. } => msg_type,
        }
    }
}

fn parse_kind(msg_type: &str, f: &Fields<'_>) -> Result<MessageKind, ParseError> {
    let kind = match msg_type.to_ascii_lowercase().as_str() {
        "text" => MessageKind::Text(Text {
            content: f.str("Content"),
            msg_data_id: f.opt_num("MsgDataId")?,
            idx: f.opt_num("Idx")?,
            biz_msg_menu_id: f.opt_str("bizmsgmenuid"),
        }),
        "image" => MessageKind::Image(Image {
            pic_url: f.str("PicUrl"),
            media_id: MediaId(f.str("MediaId")),
        }),
        "voice" => MessageKind::Voice(Voice {
            media_id: MediaId(f.str("MediaId")),
            format: f.str("Format"),
            recognition: f.opt_str("Recognition"),
        }),
        "video" => MessageKind::Video(video(f)),
        "shortvideo" => MessageKind::ShortVideo(video(f)),
        "location" => MessageKind::Location(Location {
            latitude: f.float("Location_X")?,
            longitude: f.float("Location_Y")?,
            scale: f.scale()?,
            label: f.str("Label"),
        }),
        "link" => MessageKind::Link(Link {
            title: f.str("Title"),
            description: f.str("Description"),
            url: f.str("Url"),
        }),
        "miniprogrampage" => MessageKind::MiniProgramPage(MiniProgramPage {
            app_id: f.str("AppId"),
            title: f.str("Title"),
            page_path: f.str("PagePath"),
            thumb_url: f.str("ThumbUrl"),
            thumb_media_id: MediaId(f.str("ThumbMediaId")),
        }),
        _ => MessageKind::Unknown {
            msg_type: msg_type.to_owned(),
            fields: f.0.clone(),
        },
    };
    Ok(kind)
}

fn video(f: &Fields<'_>) -> Video {
    Video {
        media_id: MediaId(f.str("MediaId")),
        thumb_media_id: MediaId(f.str("ThumbMediaId")),
    }
}

fn parse_event(name: &str, f: &Fields<'_>) -> Result<Event, ParseError> {
    let key = || f.str("EventKey");
    let event = match name.to_ascii_lowercase().as_str() {
        "subscribe" => {
            let event_key = f
                .opt_str("EventKey")
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty());
            // `qrscene_0` is a real scene (id 0); a bare `qrscene_` is none, and
            // `last_trade_no_…` after WeChat Pay is not a scene at all.
            let scene = event_key
                .as_deref()
                .and_then(|k| k.strip_prefix("qrscene_"))
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            Event::Subscribe(Subscribe {
                event_key,
                scene,
                ticket: f.opt_str("Ticket"),
            })
        }
        "unsubscribe" => Event::Unsubscribe,
        "scan" => Event::Scan(Scan {
            scene: key(),
            ticket: f.opt_str("Ticket"),
        }),
        "location" => Event::Location(LocationReport {
            latitude: f.float("Latitude")?,
            longitude: f.float("Longitude")?,
            precision: f.opt_float("Precision")?.unwrap_or(0.0),
        }),
        "click" => Event::Click { key: key() },
        "view" => Event::View {
            url: key(),
            menu_id: f.opt_num("MenuId")?,
        },
        "view_miniprogram" => Event::ViewMiniprogram {
            page_path: key(),
            menu_id: f.opt_num("MenuId")?,
        },
        "scancode_push" => Event::ScancodePush(scan_code(f)),
        "scancode_waitmsg" => Event::ScancodeWaitmsg(scan_code(f)),
        "pic_sysphoto" => Event::PicSysphoto(send_pics(f)?),
        "pic_photo_or_album" => Event::PicPhotoOrAlbum(send_pics(f)?),
        "pic_weixin" => Event::PicWeixin(send_pics(f)?),
        "location_select" => {
            let info = f.nested("SendLocationInfo");
            Event::LocationSelect(LocationSelect {
                key: key(),
                latitude: info.float("Location_X")?,
                longitude: info.float("Location_Y")?,
                scale: info.scale()?,
                label: info.str("Label"),
                poiname: info.opt_str("Poiname"),
            })
        }
        "templatesendjobfinish" => Event::TemplateSendJobFinish(TemplateSendJobFinish {
            msg_id: MsgId(f.num("MsgID")?),
            status: SendStatus::parse(&f.str("Status")),
        }),
        "masssendjobfinish" => Event::MassSendJobFinish(mass_send(f)?),
        "publishjobfinish" => Event::PublishJobFinish(publish(f)?),
        "subscribe_msg_popup_event" => Event::SubscribeMsgPopup(
            f.nested("SubscribeMsgPopupEvent")
                .list("List")
                .map(|item| {
                    Ok(SubscribeMsgPopupItem {
                        template_id: TemplateId(item.str("TemplateId")),
                        status: item.str("SubscribeStatusString"),
                        popup_scene: item.opt_num("PopupScene")?,
                    })
                })
                .collect::<Result<_, ParseError>>()?,
        ),
        "subscribe_msg_change_event" => Event::SubscribeMsgChange(
            f.nested("SubscribeMsgChangeEvent")
                .list("List")
                .map(|item| SubscribeMsgChangeItem {
                    template_id: TemplateId(item.str("TemplateId")),
                    status: item.str("SubscribeStatusString"),
                })
                .collect(),
        ),
        "subscribe_msg_sent_event" => Event::SubscribeMsgSent(
            f.nested("SubscribeMsgSentEvent")
                .list("List")
                .map(|item| {
                    Ok(SubscribeMsgSentItem {
                        template_id: TemplateId(item.str("TemplateId")),
                        msg_id: MsgId(item.num("MsgID")?),
                        error_code: item.opt_num("ErrorCode")?.unwrap_or(0),
                        error_status: item.str("ErrorStatus"),
                    })
                })
                .collect::<Result<_, ParseError>>()?,
        ),
        "kf_create_session" => Event::KfCreateSession {
            kf_account: f.str("KfAccount"),
        },
        "kf_close_session" => Event::KfCloseSession {
            kf_account: f.str("KfAccount"),
        },
        "kf_switch_session" => Event::KfSwitchSession {
            from_kf_account: f.str("FromKfAccount"),
            to_kf_account: f.str("ToKfAccount"),
        },
        _ => Event::Unknown {
            event: name.to_owned(),
            fields: f.0.clone(),
        },
    };
    Ok(event)
}

fn scan_code(f: &Fields<'_>) -> ScanCode {
    let info = f.nested("ScanCodeInfo");
    ScanCode {
        key: f.str("EventKey"),
        scan_type: info.str("ScanType"),
        scan_result: info.str("ScanResult"),
    }
}

fn send_pics(f: &Fields<'_>) -> Result<SendPics, ParseError> {
    let info = f.nested("SendPicsInfo");
    let pic_md5_sums: Vec<String> = info
        .nested("PicList")
        .list("item")
        .map(|item| item.str("PicMd5Sum"))
        .collect();
    Ok(SendPics {
        key: f.str("EventKey"),
        count: info.opt_num("Count")?.unwrap_or(pic_md5_sums.len() as u32),
        pic_md5_sums,
    })
}

fn mass_send(f: &Fields<'_>) -> Result<MassSendJobFinish, ParseError> {
    let copyright_check = match f.0.child("CopyrightCheckResult") {
        None => None,
        Some(el) => {
            let c = Fields(el);
            Some(CopyrightCheck {
                count: c.opt_num("Count")?.unwrap_or(0),
                check_state: c.opt_num("CheckState")?.unwrap_or(0),
                items: c
                    .nested("ResultList")
                    .list("item")
                    .map(|i| {
                        Ok(CopyrightCheckItem {
                            article_idx: i.num("ArticleIdx")?,
                            user_declare_state: i.opt_num("UserDeclareState")?.unwrap_or(0),
                            audit_state: i.opt_num("AuditState")?.unwrap_or(0),
                            original_article_url: i.str("OriginalArticleUrl"),
                            original_article_type: i.opt_num("OriginalArticleType")?.unwrap_or(0),
                            can_reprint: i.flag("CanReprint")?,
                            need_replace_content: i.flag("NeedReplaceContent")?,
                            need_show_reprint_source: i.flag("NeedShowReprintSource")?,
                        })
                    })
                    .collect::<Result<_, ParseError>>()?,
            })
        }
    };
    let article_urls = f
        .nested("ArticleUrlResult")
        .nested("ResultList")
        .list("item")
        .map(|i| {
            Ok(ArticleUrl {
                article_idx: i.num("ArticleIdx")?,
                url: i.str("ArticleUrl"),
            })
        })
        .collect::<Result<_, ParseError>>()?;
    Ok(MassSendJobFinish {
        msg_id: MsgId(f.num("MsgID")?),
        status: f.str("Status"),
        total_count: f.opt_num("TotalCount")?.unwrap_or(0),
        filter_count: f.opt_num("FilterCount")?.unwrap_or(0),
        sent_count: f.opt_num("SentCount")?.unwrap_or(0),
        error_count: f.opt_num("ErrorCount")?.unwrap_or(0),
        copyright_check,
        article_urls,
    })
}

fn publish(f: &Fields<'_>) -> Result<PublishJobFinish, ParseError> {
    let info = f.nested("PublishEventInfo");
    Ok(PublishJobFinish {
        publish_id: info.num("publish_id")?,
        publish_status: info.num("publish_status")?,
        article_id: info.opt_str("article_id"),
        articles: info
            .nested("article_detail")
            .list("item")
            .map(|i| {
                Ok(PublishedArticle {
                    idx: i.num("idx")?,
                    url: i.str("article_url"),
                })
            })
            .collect::<Result<_, ParseError>>()?,
        fail_idx: info
            .list("fail_idx")
            .map(|i| parse_num("fail_idx", &i.0.text))
            .collect::<Result<_, ParseError>>()?,
    })
}

/// Read access to one element's fields, with the crate's field rules.
#[derive(Clone, Copy)]
struct Fields<'a>(&'a Element);

/// Stands in for a nested element that is absent: reads as empty.
static EMPTY: Element = Element {
    name: String::new(),
    text: String::new(),
    children: Vec::new(),
};

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.text_of(name)
    }

    /// Text, empty when absent.
    fn str(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_owned()
    }

    /// Text; `None` when absent or empty.
    fn opt_str(&self, name: &str) -> Option<String> {
        self.get(name).filter(|s| !s.is_empty()).map(str::to_owned)
    }

    /// Text that must be present and non-empty.
    fn required_str(&self, name: &'static str) -> Result<String, ParseError> {
        self.get(name)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or(ParseError::Missing(name))
    }

    /// A number that must be present.
    fn num<T: FromStr>(&self, name: &'static str) -> Result<T, ParseError> {
        self.opt_num(name)?.ok_or(ParseError::Missing(name))
    }

    /// A number; `None` when absent or empty.
    fn opt_num<T: FromStr>(&self, name: &'static str) -> Result<Option<T>, ParseError> {
        match self.get(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => parse_num(name, v).map(Some),
        }
    }

    /// A finite float that must be present.
    fn float(&self, name: &'static str) -> Result<f64, ParseError> {
        self.opt_float(name)?.ok_or(ParseError::Missing(name))
    }

    fn opt_float(&self, name: &'static str) -> Result<Option<f64>, ParseError> {
        match self.opt_num::<f64>(name)? {
            Some(v) if !v.is_finite() => Err(invalid(name, &v.to_string())),
            other => Ok(other),
        }
    }

    /// A 0/1 flag; absent reads as false, any other integer as "set".
    fn flag(&self, name: &'static str) -> Result<bool, ParseError> {
        Ok(self.opt_num::<i64>(name)?.is_some_and(|v| v != 0))
    }

    /// A map zoom level: an integer, tolerated in float spelling (`15.000000`).
    fn scale(&self) -> Result<u32, ParseError> {
        match self.opt_num::<u32>("Scale") {
            Ok(v) => Ok(v.unwrap_or(0)),
            Err(e) => match self.opt_float("Scale")? {
                Some(v) if (0.0..=u32::MAX as f64).contains(&v) => Ok(v.round() as u32),
                _ => Err(e),
            },
        }
    }

    /// The first child element named `name`, or an empty stand-in.
    fn nested(&self, name: &str) -> Fields<'a> {
        Fields(self.0.child(name).unwrap_or(&EMPTY))
    }

    /// Every child element named `name`.
    fn list(self, name: &'a str) -> impl Iterator<Item = Fields<'a>> + 'a {
        self.0.children_named(name).map(Fields)
    }
}

fn parse_num<T: FromStr>(field: &'static str, value: &str) -> Result<T, ParseError> {
    value.trim().parse().map_err(|_| invalid(field, value))
}

fn invalid(field: &'static str, value: &str) -> ParseError {
    ParseError::Invalid {
        field,
        value: value.chars().take(64).collect(),
    }
}
