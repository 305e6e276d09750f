//! The messages the simulator builds: every user message type and every event of the
//! protocol reference (§3), in the shape WeChat sends them. Also the subcommands of
//! `huixin simulate`.

use rand::RngExt;

use super::SimError;
use crate::support::clock::unix_now;
use crate::wechat::xml::Element;

/// The envelope of a simulated message.
#[derive(Debug, Clone)]
pub struct Header {
    /// `ToUserName`: the account's original id.
    pub to: String,
    /// `FromUserName`: the simulated follower's OpenID.
    pub from: String,
    /// `CreateTime`.
    pub create_time: i64,
    /// `MsgId` for user messages.
    pub msg_id: u64,
    /// Extra fields appended to the message (`--field NAME=VALUE`), e.g. fields WeChat adds
    /// that huixin does not know yet.
    pub extra: Vec<(String, String)>,
}

impl Header {
    /// A header from `from` to `to`, created now, with a random message id.
    pub fn new(to: &str, from: &str) -> Self {
        Self {
            to: to.to_owned(),
            from: from.to_owned(),
            create_time: unix_now(),
            msg_id: rand::rng().random_range(1u64 << 60..u64::MAX),
            extra: Vec::new(),
        }
    }
}

/// A message to simulate.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MessageSpec {
    /// A text message.
    Text {
        /// The text (control characters are sent raw, as WeChat does).
        content: String,
    },
    /// An image message.
    Image {
        /// `MediaId`.
        #[arg(long, default_value = "media_image_simulated")]
        media_id: String,
        /// `PicUrl`.
        #[arg(long, default_value = "http://mmbiz.qpic.cn/simulated.jpg")]
        pic_url: String,
    },
    /// A voice message.
    Voice {
        /// `MediaId`.
        #[arg(long, default_value = "media_voice_simulated")]
        media_id: String,
        /// `Format`.
        #[arg(long, default_value = "amr")]
        format: String,
        /// `Recognition`: speech-to-text result.
        #[arg(long)]
        recognition: Option<String>,
    },
    /// A video message.
    Video {
        /// `MediaId`.
        #[arg(long, default_value = "media_video_simulated")]
        media_id: String,
        /// `ThumbMediaId`.
        #[arg(long, default_value = "media_thumb_simulated")]
        thumb_media_id: String,
    },
    /// A short video message.
    Shortvideo {
        /// `MediaId`.
        #[arg(long, default_value = "media_shortvideo_simulated")]
        media_id: String,
        /// `ThumbMediaId`.
        #[arg(long, default_value = "media_thumb_simulated")]
        thumb_media_id: String,
    },
    /// A location message.
    Location {
        /// `Location_X`: latitude.
        #[arg(long, default_value_t = 39.9042, allow_negative_numbers = true)]
        lat: f64,
        /// `Location_Y`: longitude.
        #[arg(long, default_value_t = 116.4074, allow_negative_numbers = true)]
        lon: f64,
        /// `Scale`.
        #[arg(long, default_value_t = 15)]
        scale: u32,
        /// `Label`.
        #[arg(long, default_value = "Tiananmen Square, Beijing")]
        label: String,
    },
    /// A link message.
    Link {
        /// `Title`.
        #[arg(long, default_value = "huixin")]
        title: String,
        /// `Description`.
        #[arg(long, default_value = "A letter in reply")]
        description: String,
        /// `Url`.
        #[arg(long, default_value = "https://example.com/article")]
        url: String,
    },
    /// A mini program card.
    #[command(alias = "miniprogrampage")]
    Miniprogram {
        /// `AppId`.
        #[arg(long, default_value = "wxminiprogram00001")]
        app_id: String,
        /// `Title`.
        #[arg(long, default_value = "A mini program page")]
        title: String,
        /// `PagePath`.
        #[arg(long, default_value = "pages/index/index")]
        page_path: String,
        /// `ThumbUrl`.
        #[arg(long, default_value = "http://mmbiz.qpic.cn/thumb.jpg")]
        thumb_url: String,
        /// `ThumbMediaId`.
        #[arg(long, default_value = "media_thumb_simulated")]
        thumb_media_id: String,
    },
    /// `subscribe`: a new follower, optionally through a parameter QR code.
    Subscribe {
        /// The QR scene (sent as `EventKey = qrscene_<scene>` with a `Ticket`).
        #[arg(long)]
        scene: Option<String>,
    },
    /// `unsubscribe`.
    Unsubscribe,
    /// `SCAN`: a follower scanned a parameter QR code.
    Scan {
        /// The scene id or string.
        scene: String,
    },
    /// `LOCATION`: a periodic location report.
    LocationEvent {
        /// `Latitude`.
        #[arg(long, default_value_t = 39.9042, allow_negative_numbers = true)]
        lat: f64,
        /// `Longitude`.
        #[arg(long, default_value_t = 116.4074, allow_negative_numbers = true)]
        lon: f64,
        /// `Precision`.
        #[arg(long, default_value_t = 30.0)]
        precision: f64,
    },
    /// `CLICK`: a menu button.
    Click {
        /// The button's key.
        key: String,
    },
    /// `VIEW`: a menu link.
    View {
        /// The URL.
        url: String,
        /// `MenuId`.
        #[arg(long)]
        menu_id: Option<i64>,
    },
    /// `view_miniprogram`: a menu button opening a mini program page.
    ViewMiniprogram {
        /// The page path.
        page_path: String,
        /// `MenuId`.
        #[arg(long)]
        menu_id: Option<i64>,
    },
    /// `scancode_push`: the menu's scanner, result pushed.
    #[command(alias = "scancode_push")]
    ScancodePush {
        /// The menu button's key.
        key: String,
        /// `ScanType`.
        #[arg(long, default_value = "qrcode")]
        scan_type: String,
        /// `ScanResult`.
        #[arg(long, default_value = "https://example.com/scanned")]
        scan_result: String,
    },
    /// `scancode_waitmsg`: the menu's scanner, waiting for our message.
    #[command(alias = "scancode_waitmsg")]
    ScancodeWaitmsg {
        /// The menu button's key.
        key: String,
        /// `ScanType`.
        #[arg(long, default_value = "qrcode")]
        scan_type: String,
        /// `ScanResult`.
        #[arg(long, default_value = "https://example.com/scanned")]
        scan_result: String,
    },
    /// `pic_sysphoto`, `pic_photo_or_album` or `pic_weixin`: the menu's picture pickers.
    Pics {
        /// Which picker: `pic_sysphoto`, `pic_photo_or_album` or `pic_weixin`.
        #[arg(long, default_value = "pic_sysphoto")]
        event: String,
        /// The menu button's key.
        key: String,
        /// `PicMd5Sum` of each picture (repeat for several).
        #[arg(long = "md5", default_value = "1b5f7c23b5bf75682a53e7b6d163e185")]
        md5: Vec<String>,
    },
    /// `location_select`: the menu's location picker.
    #[command(alias = "location_select")]
    LocationSelect {
        /// The menu button's key.
        key: String,
        /// `Location_X`.
        #[arg(long, default_value_t = 23.137466, allow_negative_numbers = true)]
        lat: f64,
        /// `Location_Y`.
        #[arg(long, default_value_t = 113.352425, allow_negative_numbers = true)]
        lon: f64,
        /// `Scale`.
        #[arg(long, default_value_t = 15)]
        scale: u32,
        /// `Label`.
        #[arg(long, default_value = "Guangzhou")]
        label: String,
        /// `Poiname` (may be empty).
        #[arg(long, default_value = "")]
        poiname: String,
    },
    /// `TEMPLATESENDJOBFINISH`: the outcome of a template message.
    #[command(alias = "TEMPLATESENDJOBFINISH")]
    TemplateFinish {
        /// `MsgID`: the id the send call returned.
        #[arg(long, default_value_t = 200163836)]
        msg_id: u64,
        /// `Status`: `success`, `failed:user block` or `failed: system failed`.
        #[arg(long, default_value = "success")]
        status: String,
    },
    /// `MASSSENDJOBFINISH`: the outcome of a mass send.
    #[command(alias = "MASSSENDJOBFINISH")]
    MassFinish {
        /// `MsgID`.
        #[arg(long, default_value_t = 1000001625)]
        msg_id: u64,
        /// `Status`.
        #[arg(long, default_value = "send success")]
        status: String,
        /// `TotalCount` (`FilterCount` and `SentCount` equal it; `ErrorCount` is 0).
        #[arg(long, default_value_t = 100)]
        total: u64,
    },
    /// `PUBLISHJOBFINISH`: the outcome of a publication.
    #[command(alias = "PUBLISHJOBFINISH")]
    PublishFinish {
        /// `publish_id`.
        #[arg(long, default_value_t = 2247503051)]
        publish_id: u64,
        /// `publish_status`: 0 success, 2+ failures.
        #[arg(long, default_value_t = 0)]
        status: i32,
        /// `article_url` of each published article (repeat for several).
        #[arg(
            long = "article-url",
            default_value = "https://mp.weixin.qq.com/s/simulated"
        )]
        article_urls: Vec<String>,
        /// `fail_idx` of each failed article (repeat for several).
        #[arg(long)]
        fail_idx: Vec<u32>,
    },
    /// `subscribe_msg_popup_event`, `subscribe_msg_change_event` or `subscribe_msg_sent_event`.
    SubscribeMsg {
        /// Which event: `popup`, `change` or `sent`.
        #[arg(long, default_value = "popup")]
        kind: String,
        /// `TemplateId` of each entry (repeat for several `<List>`).
        #[arg(
            long = "template",
            default_value = "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc"
        )]
        templates: Vec<String>,
        /// `SubscribeStatusString` (popup, change) or `ErrorStatus` (sent).
        #[arg(long, default_value = "accept")]
        status: String,
    },
    /// `kf_create_session`, `kf_close_session` or `kf_switch_session`.
    Kf {
        /// Which event: `create`, `close` or `switch`.
        #[arg(long, default_value = "create")]
        kind: String,
        /// `KfAccount` (create, close) or `FromKfAccount` (switch).
        #[arg(long, default_value = "kf2001@gh_huixin_simulated")]
        account: String,
        /// `ToKfAccount` (switch).
        #[arg(long, default_value = "kf2002@gh_huixin_simulated")]
        to_account: String,
    },
    /// Any event, by name, sent as given, with an optional `EventKey`.
    Event {
        /// The `Event` value.
        name: String,
        /// `EventKey`.
        #[arg(long)]
        key: Option<String>,
    },
    /// An XML file sent as the message body (its header fields are used as they are).
    File {
        /// The file, e.g. one of `tests/fixtures/messages/*.xml`.
        path: std::path::PathBuf,
    },
}

fn leaf(name: &str, value: impl ToString) -> Element {
    Element::leaf(name, value.to_string())
}

fn node(name: &str, children: Vec<Element>) -> Element {
    Element::node(name, children)
}

impl MessageSpec {
    /// Whether this is a user message (carries a `MsgId`).
    fn is_user_message(&self) -> bool {
        matches!(
            self,
            Self::Text { .. }
                | Self::Image { .. }
                | Self::Voice { .. }
                | Self::Video { .. }
                | Self::Shortvideo { .. }
                | Self::Location { .. }
                | Self::Link { .. }
                | Self::Miniprogram { .. }
        )
    }

    /// The message XML. [`MessageSpec::File`] is read from disk.
    pub fn to_xml(&self, header: &Header) -> Result<String, SimError> {
        if let Self::File { path } = self {
            return std::fs::read_to_string(path).map_err(|source| SimError::File {
                path: path.display().to_string(),
                source,
            });
        }
        Ok(self.to_element(header).to_xml())
    }

    /// The message as an element tree ([`MessageSpec::File`] gives an empty `<xml/>`).
    pub fn to_element(&self, header: &Header) -> Element {
        let mut f = vec![
            leaf("ToUserName", &header.to),
            leaf("FromUserName", &header.from),
            leaf("CreateTime", header.create_time),
        ];
        match self.body() {
            Some((msg_type, body)) => {
                f.push(leaf("MsgType", msg_type));
                f.extend(body);
            }
            None => return node("xml", Vec::new()),
        }
        f.extend(header.extra.iter().map(|(k, v)| leaf(k, v)));
        if self.is_user_message() {
            f.push(leaf("MsgId", header.msg_id));
        }
        node("xml", f)
    }

    /// `MsgType` and the fields after it.
    fn body(&self) -> Option<(&'static str, Vec<Element>)> {
        let event = |name: &str, mut rest: Vec<Element>| {
            rest.insert(0, leaf("Event", name));
            ("event", rest)
        };
        let scan_code = |key: &str, scan_type: &str, scan_result: &str| {
            vec![
                leaf("EventKey", key),
                node(
                    "ScanCodeInfo",
                    vec![leaf("ScanType", scan_type), leaf("ScanResult", scan_result)],
                ),
            ]
        };
        Some(match self {
            Self::Text { content } => ("text", vec![leaf("Content", content)]),
            Self::Image { media_id, pic_url } => (
                "image",
                vec![leaf("PicUrl", pic_url), leaf("MediaId", media_id)],
            ),
            Self::Voice {
                media_id,
                format,
                recognition,
            } => {
                let mut v = vec![leaf("MediaId", media_id), leaf("Format", format)];
                if let Some(r) = recognition {
                    v.push(leaf("Recognition", r));
                }
                ("voice", v)
            }
            Self::Video {
                media_id,
                thumb_media_id,
            } => (
                "video",
                vec![
                    leaf("MediaId", media_id),
                    leaf("ThumbMediaId", thumb_media_id),
                ],
            ),
            Self::Shortvideo {
                media_id,
                thumb_media_id,
            } => (
                "shortvideo",
                vec![
                    leaf("MediaId", media_id),
                    leaf("ThumbMediaId", thumb_media_id),
                ],
            ),
            Self::Location {
                lat,
                lon,
                scale,
                label,
            } => (
                "location",
                vec![
                    leaf("Location_X", lat),
                    leaf("Location_Y", lon),
                    leaf("Scale", scale),
                    leaf("Label", label),
                ],
            ),
            Self::Link {
                title,
                description,
                url,
            } => (
                "link",
                vec![
                    leaf("Title", title),
                    leaf("Description", description),
                    leaf("Url", url),
                ],
            ),
            Self::Miniprogram {
                app_id,
                title,
                page_path,
                thumb_url,
                thumb_media_id,
            } => (
                "miniprogrampage",
                vec![
                    leaf("AppId", app_id),
                    leaf("Title", title),
                    leaf("PagePath", page_path),
                    leaf("ThumbUrl", thumb_url),
                    leaf("ThumbMediaId", thumb_media_id),
                ],
            ),
            Self::Subscribe { scene } => event(
                "subscribe",
                match scene {
                    Some(scene) => vec![
                        leaf("EventKey", format!("qrscene_{scene}")),
                        leaf("Ticket", "gQsimulatedticket"),
                    ],
                    None => vec![leaf("EventKey", "")],
                },
            ),
            Self::Unsubscribe => event("unsubscribe", vec![leaf("EventKey", "")]),
            Self::Scan { scene } => event(
                "SCAN",
                vec![leaf("EventKey", scene), leaf("Ticket", "gQsimulatedticket")],
            ),
            Self::LocationEvent {
                lat,
                lon,
                precision,
            } => event(
                "LOCATION",
                vec![
                    leaf("Latitude", lat),
                    leaf("Longitude", lon),
                    leaf("Precision", precision),
                ],
            ),
            Self::Click { key } => event("CLICK", vec![leaf("EventKey", key)]),
            Self::View { url, menu_id } => {
                let mut v = vec![leaf("EventKey", url)];
                v.extend(menu_id.map(|id| leaf("MenuId", id)));
                event("VIEW", v)
            }
            Self::ViewMiniprogram { page_path, menu_id } => {
                let mut v = vec![leaf("EventKey", page_path)];
                v.extend(menu_id.map(|id| leaf("MenuId", id)));
                event("view_miniprogram", v)
            }
            Self::ScancodePush {
                key,
                scan_type,
                scan_result,
            } => event("scancode_push", scan_code(key, scan_type, scan_result)),
            Self::ScancodeWaitmsg {
                key,
                scan_type,
                scan_result,
            } => event("scancode_waitmsg", scan_code(key, scan_type, scan_result)),
            Self::Pics {
                event: name,
                key,
                md5,
            } => event(
                name,
                vec![
                    leaf("EventKey", key),
                    node(
                        "SendPicsInfo",
                        vec![
                            leaf("Count", md5.len()),
                            node(
                                "PicList",
                                md5.iter()
                                    .map(|m| node("item", vec![leaf("PicMd5Sum", m)]))
                                    .collect(),
                            ),
                        ],
                    ),
                ],
            ),
            Self::LocationSelect {
                key,
                lat,
                lon,
                scale,
                label,
                poiname,
            } => event(
                "location_select",
                vec![
                    leaf("EventKey", key),
                    node(
                        "SendLocationInfo",
                        vec![
                            leaf("Location_X", lat),
                            leaf("Location_Y", lon),
                            leaf("Scale", scale),
                            leaf("Label", label),
                            leaf("Poiname", poiname),
                        ],
                    ),
                ],
            ),
            Self::TemplateFinish { msg_id, status } => event(
                "TEMPLATESENDJOBFINISH",
                vec![leaf("MsgID", msg_id), leaf("Status", status)],
            ),
            Self::MassFinish {
                msg_id,
                status,
                total,
            } => event(
                "MASSSENDJOBFINISH",
                vec![
                    leaf("MsgID", msg_id),
                    leaf("Status", status),
                    leaf("TotalCount", total),
                    leaf("FilterCount", total),
                    leaf("SentCount", total),
                    leaf("ErrorCount", 0),
                ],
            ),
            Self::PublishFinish {
                publish_id,
                status,
                article_urls,
                fail_idx,
            } => {
                let mut info = vec![
                    leaf("publish_id", publish_id),
                    leaf("publish_status", status),
                ];
                if *status == 0 {
                    info.push(leaf(
                        "article_id",
                        format!("simulated_article_{publish_id}"),
                    ));
                    let mut detail = vec![leaf("count", article_urls.len())];
                    detail.extend(article_urls.iter().enumerate().map(|(i, url)| {
                        node("item", vec![leaf("idx", i + 1), leaf("article_url", url)])
                    }));
                    info.push(node("article_detail", detail));
                }
                info.extend(fail_idx.iter().map(|i| leaf("fail_idx", i)));
                event("PUBLISHJOBFINISH", vec![node("PublishEventInfo", info)])
            }
            Self::SubscribeMsg {
                kind,
                templates,
                status,
            } => {
                let (name, wrapper) = match kind.as_str() {
                    "change" => ("subscribe_msg_change_event", "SubscribeMsgChangeEvent"),
                    "sent" => ("subscribe_msg_sent_event", "SubscribeMsgSentEvent"),
                    _ => ("subscribe_msg_popup_event", "SubscribeMsgPopupEvent"),
                };
                let lists = templates
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let mut entry = vec![leaf("TemplateId", t)];
                        match kind.as_str() {
                            "sent" => {
                                entry.push(leaf("MsgID", 1_700_000_000_000_000_000u64 + i as u64));
                                entry.push(leaf("ErrorCode", 0));
                                entry.push(leaf("ErrorStatus", status));
                            }
                            "change" => entry.push(leaf("SubscribeStatusString", status)),
                            _ => {
                                entry.push(leaf("SubscribeStatusString", status));
                                entry.push(leaf("PopupScene", 2));
                            }
                        }
                        node("List", entry)
                    })
                    .collect();
                event(name, vec![node(wrapper, lists)])
            }
            Self::Kf {
                kind,
                account,
                to_account,
            } => match kind.as_str() {
                "switch" => event(
                    "kf_switch_session",
                    vec![
                        leaf("FromKfAccount", account),
                        leaf("ToKfAccount", to_account),
                    ],
                ),
                "close" => event("kf_close_session", vec![leaf("KfAccount", account)]),
                _ => event("kf_create_session", vec![leaf("KfAccount", account)]),
            },
            Self::Event { name, key } => {
                event(name, key.iter().map(|k| leaf("EventKey", k)).collect())
            }
            Self::File { .. } => return None,
        })
    }
}
