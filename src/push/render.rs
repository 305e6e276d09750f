//! Markdown to sanitized HTML for the detail page, and the short plain texts that template
//! message fields carry.
//!
//! Everything here is pure: strings in, strings out, no I/O. Markdown is parsed by
//! pulldown-cmark (CommonMark plus tables, strikethrough and task lists), the event stream is
//! narrowed (unsafe links and non-https images dropped, task markers turned into text, table
//! alignment turned into `align` attributes), and the resulting HTML, including any raw HTML the
//! author wrote, goes through an ammonia allow-list before it reaches a page.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use pulldown_cmark::{Alignment, CowStr, Event, Options, Parser, Tag, TagEnd, html};

/// The longest value, in characters, WeChat shows in a template message field; since 2023 the
/// platform cuts anything longer.
pub const TEMPLATE_FIELD_MAX_CHARS: usize = 20;

/// The `rel` every link in a rendered body carries.
const LINK_REL: &str = "noopener noreferrer nofollow";

/// URL schemes a link may use.
const LINK_SCHEMES: &[&str] = &["http", "https", "mailto"];

/// URL schemes an image may use.
const IMAGE_SCHEMES: &[&str] = &["https"];

/// The text shown in place of a task-list checkbox, by checked state.
const TASK_UNCHECKED: &str = "☐ ";
/// The text shown in place of a checked task-list checkbox.
const TASK_CHECKED: &str = "☑ ";

/// The character that marks a value cut by [`template_value`].
const ELLIPSIS: char = '…';

/// Plain text as markdown that renders as the same text: markdown's special characters
/// escaped, every line break kept.
pub fn text_to_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            // A backslash at the end of a line is a hard line break.
            out.push_str("\\\n");
        }
        for c in line.chars() {
            if "\\`*_{}[]()<>#+-.!|~&".contains(c) {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// Renders push markdown to an HTML fragment safe to embed inside the detail page's
/// `<article>`.
///
/// CommonMark plus tables, strikethrough and task lists. Links keep only `http`, `https` and
/// `mailto` targets and always carry `rel="noopener noreferrer nofollow"`; images keep only
/// `https` sources; raw HTML is cleaned by the same allow-list (no scripts, styles, event
/// handlers, frames, forms or embedded objects).
pub fn markdown_to_html(markdown: &str) -> String {
    let mut raw = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(
        &mut raw,
        SafeEvents::new(Parser::new_ext(markdown, parse_options())),
    );
    SANITIZER.clean(&raw).to_string()
}

/// The visible text of push markdown: no markup, link text and image alt text kept, every run
/// of whitespace (newlines included) collapsed to one space, trimmed.
pub fn plain_text(markdown: &str) -> String {
    let mut text = String::with_capacity(markdown.len());
    let mut html_block = String::new();
    let mut in_html_block = false;
    for event in Parser::new_ext(markdown, parse_options()) {
        match event {
            Event::Text(s) | Event::Code(s) | Event::InlineMath(s) | Event::DisplayMath(s) => {
                text.push_str(&s);
            }
            Event::Html(s) if in_html_block => html_block.push_str(&s),
            Event::Start(Tag::HtmlBlock) => in_html_block = true,
            Event::End(TagEnd::HtmlBlock) => {
                in_html_block = false;
                text.push(' ');
                text.push_str(&html_text(&html_block));
                text.push(' ');
                html_block.clear();
            }
            // Inline HTML events hold only a tag (`<b>`, `</b>`); the text between them comes as
            // ordinary text events.
            Event::Html(_) | Event::InlineHtml(_) => {}
            Event::SoftBreak | Event::HardBreak | Event::Rule => text.push(' '),
            // Block ends separate words that would otherwise run together ("Title" + "Body").
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::BlockQuote(_)
                | TagEnd::CodeBlock
                | TagEnd::Item
                | TagEnd::TableCell
                | TagEnd::TableRow
                | TagEnd::TableHead,
            ) => text.push(' '),
            _ => {}
        }
    }
    collapse_whitespace(&text)
}

/// Makes `text` fit a WeChat template message field: control characters and newlines become
/// spaces, emoji are removed (see [`is_emoji`]), whitespace is collapsed and trimmed, and the
/// result is cut to at most `max_chars` characters. A cut value ends in `…`, which counts
/// towards `max_chars`.
pub fn template_value(text: &str, max_chars: usize) -> String {
    let cleaned = strip_emoji(text);
    let collapsed = collapse_whitespace(&cleaned);
    truncate_chars(&collapsed, max_chars)
}

/// A template field value summarising push markdown:
/// `template_value(&plain_text(markdown), max_chars)`.
pub fn summary(markdown: &str, max_chars: usize) -> String {
    template_value(&plain_text(markdown), max_chars)
}

/// The markdown extensions pushes may use.
fn parse_options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS
}

/// The allow-list every rendered body passes through, built once.
static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(sanitizer);

/// Builds the ammonia allow-list: the tags pulldown-cmark emits for our extensions, and nothing
/// that can run script, load a frame, submit a form or restyle the page.
fn sanitizer() -> ammonia::Builder<'static> {
    let tags: HashSet<&'static str> = [
        "a",
        "b",
        "blockquote",
        "br",
        "code",
        "del",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "kbd",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "th",
        "thead",
        "tr",
        "ul",
    ]
    .into();
    // Dropped together with everything inside them: their content is either script, style,
    // foreign markup (where parser differentials live) or text a reader never sees.
    let clean_content_tags: HashSet<&'static str> = [
        "script", "style", "template", "svg", "math", "iframe", "object", "noscript", "noembed",
        "noframes", "xmp", "textarea", "title", "select",
    ]
    .into();
    let tag_attributes: HashMap<&'static str, HashSet<&'static str>> = [
        ("a", ["href", "title"].into()),
        ("img", ["src", "alt", "title"].into()),
        ("ol", ["start"].into()),
        // Checked further by `filter_attribute`: only `language-…` classes survive.
        ("code", ["class"].into()),
    ]
    .into();
    let align: HashSet<&'static str> = ["left", "center", "right"].into();
    let tag_attribute_values: HashMap<&'static str, HashMap<&'static str, HashSet<&'static str>>> =
        [
            ("th", [("align", align.clone())].into()),
            ("td", [("align", align)].into()),
        ]
        .into();

    let mut builder = ammonia::Builder::default();
    builder
        .tags(tags)
        .clean_content_tags(clean_content_tags)
        .tag_attributes(tag_attributes)
        .tag_attribute_values(tag_attribute_values)
        .generic_attributes(HashSet::new())
        .url_schemes(LINK_SCHEMES.iter().copied().collect())
        // The page lives on huixin's own host, so a relative link would point into the push
        // server rather than anywhere the author meant; dropping the target leaves inert text.
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some(LINK_REL))
        .strip_comments(true)
        .attribute_filter(filter_attribute);
    builder
}

/// The per-attribute checks ammonia's allow-list cannot express.
fn filter_attribute<'u>(element: &str, attribute: &str, value: &'u str) -> Option<Cow<'u, str>> {
    match (element, attribute) {
        // WeChat's in-app browser blocks mixed content, so only https images may load.
        ("img", "src") => has_scheme(value, IMAGE_SCHEMES).then_some(Cow::Borrowed(value)),
        ("code", "class") => is_language_class(value).then_some(Cow::Borrowed(value)),
        _ => Some(Cow::Borrowed(value)),
    }
}

/// Whether `class` is the single `language-…` class pulldown-cmark puts on fenced code.
fn is_language_class(class: &str) -> bool {
    class.strip_prefix("language-").is_some_and(|lang| {
        !lang.is_empty()
            && lang
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '#' | '.'))
    })
}

/// Whether `url` is absolute with one of `schemes` (lower-case), read the way a browser reads
/// it: leading spaces and control characters skipped, tabs and newlines ignored anywhere,
/// scheme case-insensitive. Relative URLs have no scheme and never match.
fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    let mut scheme = String::new();
    let trimmed = url.trim_start_matches(|c: char| c <= ' ');
    for c in trimmed.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')) {
        match c {
            ':' => return schemes.iter().any(|s| scheme.eq_ignore_ascii_case(s)),
            c if c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.') => scheme.push(c),
            _ => return false,
        }
    }
    false
}

/// A pulldown-cmark event stream narrowed to what a push body may contain.
///
/// - A link whose target is not http, https or mailto loses the link and keeps its text.
/// - An image whose source is not https is replaced by its alt text.
/// - Task-list markers become ☐ / ☑ text, so no `<input>` reaches the page.
/// - Table cell alignment becomes an `align` attribute instead of a `style` attribute, which
///   the sanitizer would strip.
struct SafeEvents<'a, I> {
    inner: I,
    /// For each open link, whether it was dropped.
    links: Vec<bool>,
    /// For each open image, whether it was dropped.
    images: Vec<bool>,
    /// The column alignments of the open table.
    alignments: Vec<Alignment>,
    /// Whether the table head row is open.
    in_table_head: bool,
    /// The index of the next table cell in its row.
    cell: usize,
    _marker: std::marker::PhantomData<&'a ()>,
}

impl<'a, I: Iterator<Item = Event<'a>>> SafeEvents<'a, I> {
    fn new(inner: I) -> Self {
        Self {
            inner,
            links: Vec::new(),
            images: Vec::new(),
            alignments: Vec::new(),
            in_table_head: false,
            cell: 0,
            _marker: std::marker::PhantomData,
        }
    }

    /// The tag that opens the current table cell.
    fn cell_start(&self) -> Event<'a> {
        let tag = if self.in_table_head { "th" } else { "td" };
        let align = match self.alignments.get(self.cell) {
            Some(Alignment::Left) => " align=\"left\"",
            Some(Alignment::Center) => " align=\"center\"",
            Some(Alignment::Right) => " align=\"right\"",
            Some(Alignment::None) | None => "",
        };
        Event::InlineHtml(CowStr::from(format!("<{tag}{align}>")))
    }
}

impl<'a, I: Iterator<Item = Event<'a>>> Iterator for SafeEvents<'a, I> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        loop {
            let event = self.inner.next()?;
            let mapped = match event {
                Event::Start(Tag::Link { ref dest_url, .. }) => {
                    let keep = has_scheme(dest_url, LINK_SCHEMES);
                    self.links.push(keep);
                    keep.then_some(event)
                }
                Event::End(TagEnd::Link) => self.links.pop().unwrap_or(false).then_some(event),
                Event::Start(Tag::Image { ref dest_url, .. }) => {
                    let keep = has_scheme(dest_url, IMAGE_SCHEMES);
                    self.images.push(keep);
                    keep.then_some(event)
                }
                Event::End(TagEnd::Image) => self.images.pop().unwrap_or(false).then_some(event),
                Event::TaskListMarker(checked) => Some(Event::Text(CowStr::Borrowed(if checked {
                    TASK_CHECKED
                } else {
                    TASK_UNCHECKED
                }))),
                Event::Start(Tag::Table(alignments)) => {
                    self.alignments = alignments;
                    Some(Event::Start(Tag::Table(Vec::new())))
                }
                Event::Start(Tag::TableHead) => {
                    self.in_table_head = true;
                    self.cell = 0;
                    Some(event)
                }
                Event::End(TagEnd::TableHead) => {
                    self.in_table_head = false;
                    Some(event)
                }
                Event::Start(Tag::TableRow) => {
                    self.cell = 0;
                    Some(event)
                }
                Event::Start(Tag::TableCell) => Some(self.cell_start()),
                Event::End(TagEnd::TableCell) => {
                    let tag = if self.in_table_head { "</th>" } else { "</td>" };
                    self.cell += 1;
                    Some(Event::InlineHtml(CowStr::Borrowed(tag)))
                }
                other => Some(other),
            };
            if let Some(event) = mapped {
                return Some(event);
            }
        }
    }
}

/// The text of a raw HTML block, as a reader would see it (script and style content dropped),
/// with entities decoded.
fn html_text(html: &str) -> String {
    let escaped = ammonia::Builder::empty().clean(html).to_string();
    // ammonia serializes text with exactly these escapes; `&amp;` goes last so an escaped
    // entity such as `&amp;lt;` decodes once, to `&lt;`.
    escaped
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Collapses every run of whitespace to one space and trims both ends.
fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` with emoji removed and control characters turned into spaces.
///
/// A character followed by U+FE0F (emoji presentation selector) is removed with it: that
/// pair is how a text symbol such as ❤ or a keycap digit is asked to draw as emoji.
fn strip_emoji(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{FE0F}') && !c.is_whitespace() {
            continue;
        }
        if is_emoji(c) {
            continue;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// Whether `c` is an emoji code point or an emoji sequence component WeChat template fields
/// reject.
///
/// - U+1F000–U+1FAFF: the pictographic blocks of plane 1 (Mahjong and playing cards, enclosed
///   alphanumeric and ideographic supplements with the regional indicators U+1F1E6–U+1F1FF,
///   Miscellaneous Symbols and Pictographs with the skin-tone modifiers U+1F3FB–U+1F3FF,
///   Emoticons, Transport and Map, Supplemental Symbols and Pictographs, Symbols and
///   Pictographs Extended-A).
/// - Basic-plane characters whose default presentation is emoji (Unicode `Emoji_Presentation`,
///   e.g. ⌚ ⏰ ☔ ⚡ ⚽ ✅ ✨ ❌ ⭐ ⭕). Text-style symbols such as ★ ✓ © ™ stay.
/// - Sequence components: variation selectors U+FE0E and U+FE0F, zero-width joiner U+200D,
///   combining keycap U+20E3, and the tag characters U+E0000–U+E007F used by subdivision flags.
fn is_emoji(c: char) -> bool {
    matches!(
        u32::from(c),
        0x1F000..=0x1FAFF
            | 0xFE0E..=0xFE0F
            | 0x200D
            | 0x20E3
            | 0xE0000..=0xE007F
            | 0x231A..=0x231B
            | 0x23E9..=0x23EC
            | 0x23F0
            | 0x23F3
            | 0x25FD..=0x25FE
            | 0x2614..=0x2615
            | 0x2648..=0x2653
            | 0x267F
            | 0x2693
            | 0x26A1
            | 0x26AA..=0x26AB
            | 0x26BD..=0x26BE
            | 0x26C4..=0x26C5
            | 0x26CE
            | 0x26D4
            | 0x26EA
            | 0x26F2..=0x26F3
            | 0x26F5
            | 0x26FA
            | 0x26FD
            | 0x2705
            | 0x270A..=0x270B
            | 0x2728
            | 0x274C
            | 0x274E
            | 0x2753..=0x2755
            | 0x2757
            | 0x2795..=0x2797
            | 0x27B0
            | 0x27BF
            | 0x2B1B..=0x2B1C
            | 0x2B50
            | 0x2B55
    )
}

/// At most `max_chars` characters of `text`; a cut value's last kept character is replaced by
/// `…`, so it is exactly `max_chars` long.
fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let Some(keep) = max_chars.checked_sub(1) else {
        return String::new();
    };
    let mut out: String = text.chars().take(keep).collect();
    out.push(ELLIPSIS);
    out
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn text_renders_as_itself() {
        let text = "line *one*\n# not a heading\n<b>x</b> & 1. two";
        let html = markdown_to_html(&text_to_markdown(text));
        assert!(html.contains("line *one*<br"), "{html}");
        assert!(html.contains("# not a heading"), "{html}");
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt; &amp; 1. two"), "{html}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_value_strips_emoji_and_sequences() {
        // Family (ZWJ sequence), thumbs-up with skin tone, flag, keycap, heart with VS16,
        // subdivision flag, emoji-presentation BMP symbols.
        let input = "告警👨\u{200D}👩\u{200D}👧 👍🏽 🇨🇳 1\u{FE0F}\u{20E3} ❤\u{FE0F} \
                     🏴\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F} ✅⭐⚡ 完成";
        assert_eq!(template_value(input, 100), "告警 完成");
    }

    #[test]
    fn template_value_keeps_text_symbols() {
        assert_eq!(template_value("★ ✓ © ™ → 100%", 100), "★ ✓ © ™ → 100%");
        // A text-presentation selector only loses the selector.
        assert_eq!(template_value("☎\u{FE0E}客服", 100), "☎客服");
    }

    #[test]
    fn template_value_collapses_controls_and_newlines() {
        assert_eq!(
            template_value("  第一行\r\n第二行\t\u{0}\u{1b}第三行\u{2028}  ", 100),
            "第一行 第二行 第三行"
        );
    }

    #[test]
    fn template_value_truncates_by_chars_with_ellipsis() {
        let text = "服务器磁盘使用率超过百分之九十请尽快处理否则服务将中断";
        let value = template_value(text, TEMPLATE_FIELD_MAX_CHARS);
        assert_eq!(value.chars().count(), TEMPLATE_FIELD_MAX_CHARS);
        assert_eq!(value, "服务器磁盘使用率超过百分之九十请尽快处…");
        // Exactly at the limit: untouched.
        let twenty: String = text.chars().take(20).collect();
        assert_eq!(template_value(&twenty, 20), twenty);
        // One over: cut.
        let twenty_one: String = text.chars().take(21).collect();
        assert_eq!(template_value(&twenty_one, 20).chars().count(), 20);
        assert!(template_value(&twenty_one, 20).ends_with('…'));
    }

    #[test]
    fn template_value_truncates_after_removing_emoji() {
        // Emoji do not count towards the limit: they are gone before the cut.
        assert_eq!(template_value("🔥🔥🔥ab", 2), "ab");
    }

    #[test]
    fn template_value_edge_limits_never_panic() {
        assert_eq!(template_value("", 0), "");
        assert_eq!(template_value("", 5), "");
        assert_eq!(template_value("abc", 0), "");
        assert_eq!(template_value("abc", 1), "…");
        assert_eq!(template_value("a", 1), "a");
        assert_eq!(template_value("中文", 1), "…");
        assert_eq!(template_value("🎉🎉🎉", 1), "");
        assert_eq!(template_value("\u{FE0F}\u{200D}\u{20E3}", 3), "");
        assert_eq!(template_value("\u{FE0F}", 0), "");
        assert_eq!(template_value(" \u{FE0F}x", 5), "x");
    }

    #[test]
    fn plain_text_drops_markup_keeps_text() {
        let md = "# 标题\n\n一段 **粗体** 和 [链接](https://example.com) 以及 \
                  ![告警图](https://example.com/a.png)\n\n- 项目一\n- 项目二\n\n```\ncode  block\n```\n";
        assert_eq!(
            plain_text(md),
            "标题 一段 粗体 和 链接 以及 告警图 项目一 项目二 code block"
        );
    }

    #[test]
    fn plain_text_of_raw_html_block_is_its_text() {
        let md = "<div>磁盘 &amp; 内存<script>alert(1)</script></div>\n\n下一段";
        assert_eq!(plain_text(md), "磁盘 & 内存 下一段");
        assert_eq!(plain_text("a <b>b</b> c"), "a b c");
    }

    #[test]
    fn plain_text_of_table_separates_cells() {
        assert_eq!(plain_text("| a | b |\n|---|---|\n| 1 | 2 |\n"), "a b 1 2");
    }

    #[test]
    fn summary_is_template_value_of_plain_text() {
        let md = "## 部署完成 🚀\n\n版本 *v1.2.3* 已上线，耗时 3 分钟。";
        assert_eq!(
            summary(md, 100),
            "部署完成 版本 v1.2.3 已上线，耗时 3 分钟。"
        );
        assert_eq!(summary(md, 8), "部署完成 版本…");
        assert_eq!(summary("", TEMPLATE_FIELD_MAX_CHARS), "");
    }

    #[test]
    fn has_scheme_reads_urls_like_a_browser() {
        assert!(has_scheme("https://a.example/x", IMAGE_SCHEMES));
        assert!(has_scheme("  HTTPS://a.example/x", IMAGE_SCHEMES));
        assert!(!has_scheme("http://a.example/x", IMAGE_SCHEMES));
        assert!(!has_scheme("//a.example/x", IMAGE_SCHEMES));
        assert!(!has_scheme("/relative", LINK_SCHEMES));
        assert!(!has_scheme("java\tscript:alert(1)", LINK_SCHEMES));
        assert!(!has_scheme("\u{1}javascript:alert(1)", LINK_SCHEMES));
        assert!(has_scheme("mailto:ops@example.com", LINK_SCHEMES));
        assert!(!has_scheme("", LINK_SCHEMES));
    }

    #[test]
    fn links_get_rel_and_unsafe_targets_lose_the_link() {
        let html = markdown_to_html("[ok](https://example.com) [bad](javascript:alert(1))");
        assert!(
            html.contains(
                r#"<a href="https://example.com" rel="noopener noreferrer nofollow">ok</a>"#
            ),
            "{html}"
        );
        assert!(!html.contains("javascript"), "{html}");
        assert!(html.contains("bad"), "{html}");
    }

    #[test]
    fn relative_links_are_inert() {
        let html = markdown_to_html("[home](/admin) [up](../x) [frag](#top)");
        assert!(!html.contains("href"), "{html}");
        let html = markdown_to_html("<a href=\"/admin\">admin</a>");
        assert!(!html.contains("href"), "{html}");
    }

    #[test]
    fn images_need_https() {
        let html =
            markdown_to_html("![图](http://example.com/a.png) ![好](https://example.com/b.png)");
        assert!(!html.contains("http://"), "{html}");
        assert!(html.contains("图"), "{html}");
        assert!(
            html.contains(r#"<img src="https://example.com/b.png" alt="好">"#),
            "{html}"
        );
        let html = markdown_to_html(r#"<img src="http://example.com/a.png" alt="x">"#);
        assert!(!html.contains("src="), "{html}");
    }

    #[test]
    fn task_lists_render_as_text() {
        let html = markdown_to_html("- [ ] 待办\n- [x] 已完成\n");
        assert!(html.contains("☐ 待办"), "{html}");
        assert!(html.contains("☑ 已完成"), "{html}");
        assert!(!html.contains("<input"), "{html}");
    }

    #[test]
    fn table_alignment_becomes_align_attribute() {
        let html = markdown_to_html("| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |\n");
        assert!(html.contains(r#"<th align="left">a</th>"#), "{html}");
        assert!(html.contains(r#"<td align="center">2</td>"#), "{html}");
        assert!(html.contains(r#"<td align="right">3</td>"#), "{html}");
        assert!(!html.contains("style"), "{html}");
    }

    #[test]
    fn code_keeps_language_class_and_escapes() {
        let html = markdown_to_html("```rust\nlet x = \"<b>\";\n```\n");
        assert!(html.contains(r#"<code class="language-rust">"#), "{html}");
        assert!(html.contains("&lt;b&gt;"), "{html}");
        let html = markdown_to_html(r#"<code class="evil big">x</code>"#);
        assert!(!html.contains("class"), "{html}");
    }
}
