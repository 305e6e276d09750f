//! The push detail page and its 404, as complete HTML documents.
//!
//! Pages are built by plain string assembly: every value from a push is escaped here, except
//! the body, which [`super::render::markdown_to_html`] has already sanitized. The pages carry
//! inline CSS only, load nothing from elsewhere and contain no JavaScript, so they work under
//! [`CONTENT_SECURITY_POLICY`].

/// The `Content-Security-Policy` header value served with every push page.
///
/// Nothing may load by default; images only over https (the rendered body allows nothing
/// else); styles only from the page's own inline `<style>`; no `<base>` rewriting, no form
/// submission, and no framing by other sites. The server sends it together with
/// `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; img-src https:; \
     style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The label of the button that opens a push's link.
pub const OPEN_LINK_LABEL: &str = "打开链接";

/// The 404 page's title and main message.
pub const NOT_FOUND_MESSAGE: &str = "消息不存在或已过期";

/// The 404 page's English line under the main message.
pub const NOT_FOUND_MESSAGE_EN: &str = "This message does not exist or has expired.";

/// The `rel` of the page's link button.
const LINK_REL: &str = "noopener noreferrer nofollow";

/// The stylesheet shared by every push page: a single readable column sized for a phone, light
/// by default with a dark variant.
const STYLE: &str = r#"
:root { color-scheme: light dark; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body {
  margin: 0;
  background: #f6f7f9;
  color: #1f2328;
  font-family: -apple-system, BlinkMacSystemFont, "PingFang SC", "Hiragino Sans GB",
    "Microsoft YaHei", "Noto Sans CJK SC", "Source Han Sans SC", "Segoe UI", Roboto,
    "Helvetica Neue", Arial, sans-serif;
  font-size: 17px;
  line-height: 1.75;
  word-wrap: break-word;
  overflow-wrap: anywhere;
}
main { max-width: 720px; margin: 0 auto; padding: 20px 16px 32px; }
article { background: #fff; border-radius: 12px; padding: 20px 18px; }
h1.title { font-size: 1.4em; line-height: 1.4; margin: 0 0 8px; }
.meta { color: #6e7781; font-size: 0.85em; margin: 0 0 16px; }
.body h1, .body h2, .body h3, .body h4, .body h5, .body h6 { line-height: 1.4; margin: 1.2em 0 0.6em; }
.body h1 { font-size: 1.3em; }
.body h2 { font-size: 1.2em; }
.body h3 { font-size: 1.1em; }
.body h4, .body h5, .body h6 { font-size: 1em; }
.body p, .body ul, .body ol, .body blockquote, .body pre, .body table { margin: 0 0 1em; }
.body ul, .body ol { padding-left: 1.5em; }
.body a { color: #0969da; }
.body img { max-width: 100%; height: auto; border-radius: 6px; }
.body blockquote { margin-left: 0; padding: 0 0 0 12px; border-left: 4px solid #d0d7de; color: #57606a; }
.body code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9em;
  background: #eff1f3; border-radius: 4px; padding: 0.1em 0.3em; }
.body pre { background: #eff1f3; border-radius: 8px; padding: 12px; overflow-x: auto;
  -webkit-overflow-scrolling: touch; line-height: 1.5; }
.body pre code { background: none; padding: 0; font-size: 0.85em; white-space: pre; }
.body table { display: block; max-width: 100%; overflow-x: auto; border-collapse: collapse;
  -webkit-overflow-scrolling: touch; }
.body th, .body td { border: 1px solid #d0d7de; padding: 6px 10px; white-space: nowrap; }
.body th { background: #f6f8fa; }
.body hr { border: 0; border-top: 1px solid #d0d7de; margin: 1.5em 0; }
.link { display: block; margin-top: 20px; padding: 12px; text-align: center; border-radius: 8px;
  background: #07c160; color: #fff; text-decoration: none; font-weight: 600; }
.notice { text-align: center; padding: 48px 18px; }
.notice p { margin: 0 0 8px; }
.notice .en { color: #6e7781; font-size: 0.9em; }
footer { text-align: center; color: #8c959f; font-size: 0.75em; margin-top: 20px; }
@media (prefers-color-scheme: dark) {
  body { background: #111; color: #d6d6d6; }
  article { background: #1c1c1e; }
  .meta, .notice .en { color: #8b949e; }
  .body a { color: #58a6ff; }
  .body blockquote { border-left-color: #3d444d; color: #9198a1; }
  .body code, .body pre { background: #2a2a2d; }
  .body th { background: #232326; }
  .body th, .body td, .body hr { border-color: #3d444d; }
  .link { background: #06ad56; }
  footer { color: #6e7681; }
}
"#;

/// What the detail page shows of one push.
#[derive(Debug, Clone, Copy)]
pub struct PageView<'a> {
    /// The push title, as plain text (escaped here).
    pub title: &'a str,
    /// When the push was sent, already formatted for readers, e.g. `2026-11-21 14:03`.
    pub time: &'a str,
    /// The push body as HTML, already sanitized by [`super::render::markdown_to_html`]; inserted
    /// as is.
    pub body_html: &'a str,
    /// The push's link, shown as a button when it is an http or https URL.
    pub url: Option<&'a str>,
    /// The site name shown small at the bottom of the page, e.g. `huixin`.
    pub site_name: &'a str,
}

/// The complete HTML document for one push.
pub fn detail_page(view: &PageView) -> String {
    let link = view
        .url
        .map(str::trim)
        .filter(|url| is_http_url(url))
        .map(|url| {
            format!(
                "<a class=\"link\" href=\"{}\" rel=\"{LINK_REL}\">{OPEN_LINK_LABEL}</a>",
                escape(url)
            )
        })
        .unwrap_or_default();
    let content = format!(
        "<article>\n<h1 class=\"title\">{title}</h1>\n\
         <p class=\"meta\"><time>{time}</time></p>\n\
         <div class=\"body\">\n{body}</div>\n{link}</article>",
        title = escape(view.title),
        time = escape(view.time),
        body = view.body_html,
    );
    document(view.title, &content, view.site_name)
}

/// The page served for a push that does not exist or has expired; it says nothing more.
pub fn not_found_page(site_name: &str) -> String {
    let content = format!(
        "<article class=\"notice\">\n<h1 class=\"title\">{NOT_FOUND_MESSAGE}</h1>\n\
         <p class=\"en\">{NOT_FOUND_MESSAGE_EN}</p>\n</article>"
    );
    document(NOT_FOUND_MESSAGE, &content, site_name)
}

/// A page that tells the reader one thing: a title and a line under it, both escaped (the
/// binding pages: bound, expired, failed).
pub fn notice_page(title: &str, message: &str, site_name: &str) -> String {
    let content = format!(
        "<article class=\"notice\">\n<h1 class=\"title\">{}</h1>\n<p>{}</p>\n</article>",
        escape(title),
        escape(message)
    );
    document(title, &content, site_name)
}

/// Wraps `content` (trusted HTML) in the shared document shell; `title` and `site_name` are
/// escaped.
fn document(title: &str, content: &str, site_name: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n\
         <meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         {content}\n<footer>{site_name}</footer>\n</main>\n</body>\n</html>\n",
        title = escape(title),
        site_name = escape(site_name),
    )
}

/// Whether `url` (already trimmed) is an absolute http or https URL.
fn is_http_url(url: &str) -> bool {
    // Only the exact prefixes count: a URL with control characters or whitespace inside its
    // scheme is rejected rather than read the way a lenient browser might.
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Escapes text for HTML text and double- or single-quoted attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(title: &'a str, url: Option<&'a str>) -> PageView<'a> {
        PageView {
            title,
            time: "2026-11-21 14:03",
            body_html: "<p>正文</p>\n",
            url,
            site_name: "huixin",
        }
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape("中文"), "中文");
    }

    #[test]
    fn detail_page_has_head_and_structure() {
        let page = detail_page(&view("部署完成", None));
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"zh-CN\">"));
        assert!(page.contains("<meta charset=\"utf-8\">"));
        assert!(
            page.contains(
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            )
        );
        assert!(page.contains("<meta name=\"referrer\" content=\"no-referrer\">"));
        assert!(page.contains("<title>部署完成</title>"));
        assert!(page.contains("<h1 class=\"title\">部署完成</h1>"));
        assert!(page.contains("<p class=\"meta\"><time>2026-11-21 14:03</time></p>"));
        assert!(page.contains("<div class=\"body\">\n<p>正文</p>\n</div>"));
        assert!(page.contains("<footer>huixin</footer>"));
        assert!(page.contains("prefers-color-scheme: dark"));
        assert!(page.contains("\"PingFang SC\"") && page.contains("\"Microsoft YaHei\""));
        assert!(!page.contains("<script"));
        assert!(!page.contains("class=\"link\""));
    }

    #[test]
    fn detail_page_escapes_title_time_and_site() {
        let page = detail_page(&PageView {
            title: "<script>alert('x')</script>",
            time: "\"><img src=x onerror=alert(1)>",
            body_html: "",
            url: None,
            site_name: "<b>&'",
        });
        assert!(!page.contains("<script>"));
        assert!(page.contains("<title>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</title>"));
        assert!(page.contains("<time>&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</time>"));
        assert!(page.contains("<footer>&lt;b&gt;&amp;&#39;</footer>"));
    }

    #[test]
    fn link_only_for_http_and_https() {
        for url in [
            "https://example.com/a?b=1&c=2",
            "http://example.com",
            "  HTTPS://x.example  ",
        ] {
            let page = detail_page(&view("t", Some(url)));
            assert!(page.contains("<a class=\"link\" href=\""), "{url}");
            assert!(page.contains(OPEN_LINK_LABEL), "{url}");
            assert!(
                page.contains("rel=\"noopener noreferrer nofollow\""),
                "{url}"
            );
        }
        let page = detail_page(&view("t", Some("https://example.com/a?b=1&c=2")));
        assert!(page.contains("href=\"https://example.com/a?b=1&amp;c=2\""));
        let page = detail_page(&view("t", Some("  HTTPS://x.example  ")));
        assert!(page.contains("href=\"HTTPS://x.example\""));

        for url in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>",
            "vbscript:x",
            "ftp://example.com",
            "mailto:a@example.com",
            "/relative",
            "//example.com",
            "java\tscript:alert(1)",
            "http:/example.com",
            "",
            "   ",
        ] {
            let page = detail_page(&view("t", Some(url)));
            assert!(!page.contains("class=\"link\""), "{url:?}");
        }
    }

    #[test]
    fn link_href_cannot_break_the_attribute() {
        let page = detail_page(&view(
            "t",
            Some("https://x.example/\"onmouseover='alert(1)'"),
        ));
        assert!(page.contains("href=\"https://x.example/&quot;onmouseover=&#39;alert(1)&#39;\""));
    }

    #[test]
    fn not_found_page_is_friendly_and_bare() {
        let page = not_found_page("huixin");
        assert!(page.contains(NOT_FOUND_MESSAGE));
        assert!(page.contains(NOT_FOUND_MESSAGE_EN));
        assert!(page.contains("<title>消息不存在或已过期</title>"));
        assert!(page.contains("<footer>huixin</footer>"));
        assert!(!page.contains("<script"));
        assert!(not_found_page("<x>").contains("<footer>&lt;x&gt;</footer>"));
    }

    #[test]
    fn policy_is_strict() {
        assert_eq!(
            CONTENT_SECURITY_POLICY,
            "default-src 'none'; img-src https:; style-src 'unsafe-inline'; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'"
        );
    }
}
