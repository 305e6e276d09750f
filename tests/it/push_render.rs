//! The push renderer and detail page against an XSS corpus, plus the markdown a push is
//! expected to render.
//!
//! The corpus lives in `tests/fixtures/push/xss.txt`: one markdown payload per record, records
//! separated by a line holding only `----`, so a payload may span lines.

use huixin::push::page::{self, PageView};
use huixin::push::render;

/// The separator line between corpus records.
const RECORD_SEPARATOR: &str = "----";

/// Payloads that cannot live in a text fixture: NUL bytes and other raw control characters.
const CONTROL_PAYLOADS: &[&str] = &[
    "<scr\0ipt>alert(1)</script>",
    "\0<script>alert(1)</script>",
    "[x](java\0script:alert(1))",
    "[x](java\u{1}script:alert(1))",
    "[x](\u{1}javascript:alert(1))",
    "<a href=\"java\0script:alert(1)\">x</a>",
    "<a href=\"\u{1}javascript:alert(1)\">x</a>",
    "<img src=x one\0rror=alert(1)>",
    "<img src=\"https://ok.example/a.png\0\" onerror=alert(1)>",
    "![x](\u{b}https://ok.example/a.png)",
];

/// Link targets for the detail page's button that must not produce a button.
const UNSAFE_PAGE_URLS: &[&str] = &[
    "javascript:alert(1)",
    " JaVaScRiPt:alert(1) ",
    "java\tscript:alert(1)",
    "\u{1}javascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "//evil.example/",
    "/relative",
    "ftp://example.com/",
];

/// Link targets that do produce a button, escaped.
const HOSTILE_HTTP_URLS: &[&str] = &[
    "https://x.example/\" onmouseover=\"alert(1)",
    "https://x.example/'><script>alert(1)</script>",
    "http://x.example/?a=1&b=<b>",
];

/// Tags a rendered body may contain.
const FRAGMENT_TAGS: &[&str] = &[
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
];

/// Tags the page shell adds around a body.
const PAGE_TAGS: &[&str] = &[
    "html", "head", "meta", "title", "style", "body", "main", "article", "h1", "p", "time", "div",
    "a", "footer",
];

/// Tag openings that must never appear in a rendered body.
const FORBIDDEN_OPENINGS: &[&str] = &[
    "<script",
    "<iframe",
    "<object",
    "<embed",
    "<form",
    "<style",
    "<meta",
    "<base",
    "<link",
    "<svg",
    "<math",
    "<input",
    "<button",
    "<textarea",
    "<select",
    "<template",
    "<noscript",
    "<details",
    "<video",
    "<audio",
    "<source",
    "<marquee",
    "<isindex",
    "<xmp",
    "<plaintext",
];

/// One start tag of an HTML string: its name and attributes (values unquoted, not decoded).
#[derive(Debug)]
struct StartTag {
    name: String,
    attrs: Vec<(String, String)>,
}

/// The start tags of `html`, read the way the HTML tokenizer reads them: quoted attribute
/// values may hold `>` and spaces, so a plain `<[^>]*>` match, or a regex for ` on…=` over the
/// tag text, would misread a harmless `alt="a > b onerror=x"` as a handler.
fn start_tags(html: &str) -> Vec<StartTag> {
    let bytes = html.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            i += 1;
            continue;
        }
        i += 1;
        if i < bytes.len() && !bytes[i].is_ascii_alphabetic() {
            // End tags, comments and the doctype: skip to the end of the construct.
            while i < bytes.len() && bytes[i] != b'>' {
                i += 1;
            }
            continue;
        }
        let name_start = i;
        while i < bytes.len() && !is_tag_delimiter(bytes[i]) {
            i += 1;
        }
        let name = html[name_start..i].to_ascii_lowercase();
        let mut attrs = Vec::new();
        loop {
            while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] == b'>' {
                i += 1;
                break;
            }
            let attr_start = i;
            while i < bytes.len() && !is_tag_delimiter(bytes[i]) && bytes[i] != b'=' {
                i += 1;
            }
            let attr = html[attr_start..i].to_ascii_lowercase();
            let mut value = String::new();
            if i < bytes.len() && bytes[i] == b'=' {
                i += 1;
                let quote = bytes.get(i).copied().filter(|q| *q == b'"' || *q == b'\'');
                let value_start = if quote.is_some() { i + 1 } else { i };
                i = value_start;
                while i < bytes.len()
                    && match quote {
                        Some(q) => bytes[i] != q,
                        None => !bytes[i].is_ascii_whitespace() && bytes[i] != b'>',
                    }
                {
                    i += 1;
                }
                value = html[value_start..i.min(bytes.len())].to_string();
                if quote.is_some() {
                    i += 1;
                }
            }
            attrs.push((attr, value));
        }
        tags.push(StartTag { name, attrs });
    }
    tags
}

fn is_tag_delimiter(b: u8) -> bool {
    b.is_ascii_whitespace() || b == b'>' || b == b'/'
}

/// `value` as a browser reads a URL's scheme: lower-cased, without whitespace and control
/// characters, with the entities ammonia emits decoded.
fn normalized_url(value: &str) -> String {
    value
        .replace("&amp;", "&")
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Asserts the safety rules every tag of `html` must follow; `allowed` is the set of tag
/// names that may appear.
fn assert_safe_tags(html: &str, allowed: &[&str], context: &str) {
    for tag in start_tags(html) {
        assert!(
            allowed.contains(&tag.name.as_str()),
            "tag <{}> not allowed\n{context}\n{html}",
            tag.name
        );
        for (name, value) in &tag.attrs {
            assert!(
                !name.starts_with("on"),
                "event handler {name} on <{}>\n{context}\n{html}",
                tag.name
            );
            assert!(
                !matches!(
                    name.as_str(),
                    "style" | "srcset" | "srcdoc" | "formaction" | "action" | "ping" | "xlink:href"
                ),
                "attribute {name} on <{}>\n{context}\n{html}",
                tag.name
            );
            let url = normalized_url(value);
            for scheme in ["javascript:", "vbscript:"] {
                assert!(
                    !url.contains(scheme),
                    "{scheme} in {name} of <{}>\n{context}\n{html}",
                    tag.name
                );
            }
            match name.as_str() {
                "href" => assert!(
                    ["http://", "https://", "mailto:"]
                        .iter()
                        .any(|s| url.starts_with(s)),
                    "href {value:?}\n{context}\n{html}"
                ),
                "src" => {
                    assert_eq!(tag.name, "img", "src on <{}>\n{context}\n{html}", tag.name);
                    assert!(
                        url.starts_with("https://"),
                        "img src {value:?}\n{context}\n{html}"
                    );
                }
                _ => {}
            }
            if matches!(name.as_str(), "href" | "src") {
                assert!(!url.contains("data:"), "data: in {name}\n{context}\n{html}");
            }
        }
    }
}

/// Asserts that a rendered body is safe to embed.
fn assert_safe_fragment(html: &str, context: &str) {
    let lower = html.to_ascii_lowercase();
    for opening in FORBIDDEN_OPENINGS {
        assert!(!lower.contains(opening), "{opening}\n{context}\n{html}");
    }
    assert!(
        !lower.contains(" style="),
        "style attribute\n{context}\n{html}"
    );
    assert_safe_tags(html, FRAGMENT_TAGS, context);
}

/// Asserts that a full page is safe: its own head holds the only `<meta>` and `<style>`, and
/// every tag follows the fragment rules.
fn assert_safe_page(page: &str, context: &str) {
    let lower = page.to_ascii_lowercase();
    let head_end = lower.find("</head>").expect("page has a head");
    let (head, rest) = lower.split_at(head_end);
    assert_eq!(head.matches("<meta").count(), 3, "{context}\n{page}");
    assert_eq!(head.matches("<style").count(), 1, "{context}\n{page}");
    assert_eq!(head.matches("<title").count(), 1, "{context}\n{page}");
    for opening in FORBIDDEN_OPENINGS {
        assert!(
            !rest.contains(opening),
            "{opening} in body\n{context}\n{page}"
        );
    }
    assert!(!lower.contains("<script"), "{context}\n{page}");
    // No ` style=` substring check here: escaped payloads in the title and time are text
    // (`&lt;a style=&quot;…`); `assert_safe_tags` rejects a real `style` attribute.
    let mut allowed = FRAGMENT_TAGS.to_vec();
    allowed.extend_from_slice(PAGE_TAGS);
    assert_safe_tags(page, &allowed, context);
}

/// The corpus records, in file order.
fn corpus() -> Vec<String> {
    let text = include_str!("../fixtures/push/xss.txt");
    let mut records = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if line == RECORD_SEPARATOR {
            records.push(current.join("\n"));
            current.clear();
        } else {
            current.push(line);
        }
    }
    records.push(current.join("\n"));
    records.retain(|r| !r.trim().is_empty());
    records
}

fn all_payloads() -> Vec<String> {
    let mut payloads = corpus();
    payloads.extend(CONTROL_PAYLOADS.iter().map(|p| p.to_string()));
    payloads
}

#[test]
fn corpus_is_large_enough() {
    assert!(corpus().len() >= 50, "only {} payloads", corpus().len());
}

#[test]
fn xss_corpus_renders_safe_fragments() {
    for (i, payload) in all_payloads().iter().enumerate() {
        let html = render::markdown_to_html(payload);
        assert_safe_fragment(&html, &format!("payload #{i}: {payload:?}"));
    }
}

#[test]
fn xss_corpus_renders_safe_pages() {
    for (i, payload) in all_payloads().iter().enumerate() {
        let body = render::markdown_to_html(payload);
        let context = format!("payload #{i}: {payload:?}");
        // The payload also stands in for every plain-text field of the page.
        let page = page::detail_page(&PageView {
            title: payload,
            time: payload,
            body_html: &body,
            url: Some(payload),
            site_name: payload,
        });
        assert_safe_page(&page, &context);
        assert!(page.contains(&body), "{context}");
    }
}

#[test]
fn xss_corpus_summaries_are_plain() {
    for payload in all_payloads() {
        let summary = render::summary(&payload, render::TEMPLATE_FIELD_MAX_CHARS);
        assert!(summary.chars().count() <= render::TEMPLATE_FIELD_MAX_CHARS);
        assert!(!summary.chars().any(char::is_control), "{payload:?}");
    }
}

#[test]
fn unsafe_page_urls_get_no_button() {
    for url in UNSAFE_PAGE_URLS {
        let page = page::detail_page(&PageView {
            title: "t",
            time: "2026-11-21 14:03",
            body_html: "",
            url: Some(url),
            site_name: "huixin",
        });
        assert!(!page.contains("class=\"link\""), "{url:?}");
        assert_safe_page(&page, url);
    }
}

#[test]
fn hostile_http_urls_stay_inside_the_href() {
    for url in HOSTILE_HTTP_URLS {
        let page = page::detail_page(&PageView {
            title: "t",
            time: "2026-11-21 14:03",
            body_html: "",
            url: Some(url),
            site_name: "huixin",
        });
        assert_safe_page(&page, url);
        let links: Vec<_> = start_tags(&page)
            .into_iter()
            .filter(|t| t.name == "a")
            .collect();
        assert_eq!(links.len(), 1, "{url:?}\n{page}");
        let names: Vec<_> = links[0].attrs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["class", "href", "rel"], "{url:?}");
        assert_eq!(links[0].attrs[2].1, "noopener noreferrer nofollow");
    }
}

#[test]
fn not_found_page_is_safe() {
    let page = page::not_found_page("<script>alert(1)</script>");
    assert_safe_page(&page, "not found");
    assert!(page.contains("消息不存在或已过期"));
    assert!(page.contains("This message does not exist or has expired."));
}

#[test]
fn renders_headings_emphasis_and_lists() {
    let html = render::markdown_to_html(
        "# 标题\n\n## 小节\n\n*斜体* **粗体** ~~删除~~\n\n- 一\n- 二\n\n3. 三\n4. 四\n",
    );
    assert!(html.contains("<h1>标题</h1>"), "{html}");
    assert!(html.contains("<h2>小节</h2>"), "{html}");
    assert!(html.contains("<em>斜体</em>"), "{html}");
    assert!(html.contains("<strong>粗体</strong>"), "{html}");
    assert!(html.contains("<del>删除</del>"), "{html}");
    assert!(
        html.contains("<ul>\n<li>一</li>\n<li>二</li>\n</ul>"),
        "{html}"
    );
    assert!(html.contains("<ol start=\"3\">"), "{html}");
}

#[test]
fn renders_tables() {
    let html = render::markdown_to_html("| 主机 | 负载 |\n|:---|---:|\n| web-1 | 0.42 |\n");
    assert!(html.contains("<table>"), "{html}");
    assert!(html.contains("<th align=\"left\">主机</th>"), "{html}");
    assert!(html.contains("<td align=\"right\">0.42</td>"), "{html}");
    assert_safe_fragment(&html, "table");
}

#[test]
fn fenced_code_stays_escaped() {
    let html = render::markdown_to_html("```html\n<b>粗</b> & \"引号\"\n```\n");
    assert!(
        html.contains(
            "<pre><code class=\"language-html\">&lt;b&gt;粗&lt;/b&gt; &amp; \"引号\"\n</code></pre>"
        ),
        "{html}"
    );
}

#[test]
fn https_image_keeps_alt() {
    let html = render::markdown_to_html("![磁盘曲线](https://img.example/disk.png)");
    assert!(
        html.contains("<img src=\"https://img.example/disk.png\" alt=\"磁盘曲线\">"),
        "{html}"
    );
}

#[test]
fn non_https_image_becomes_its_alt_text() {
    let html = render::markdown_to_html("![磁盘曲线](http://img.example/disk.png)");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("磁盘曲线"), "{html}");
}

#[test]
fn links_carry_rel() {
    let html = render::markdown_to_html(
        "[详情](https://ops.example/alerts/1) 和 <https://ops.example/> 和 [邮件](mailto:ops@example.com)",
    );
    assert!(
        html.contains(
            "<a href=\"https://ops.example/alerts/1\" rel=\"noopener noreferrer nofollow\">详情</a>"
        ),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"https://ops.example/\" rel=\"noopener noreferrer nofollow\">"),
        "{html}"
    );
    assert!(html.contains("href=\"mailto:ops@example.com\""), "{html}");
    assert_eq!(
        html.matches("<a ").count(),
        html.matches("rel=\"noopener noreferrer nofollow\"").count()
    );
}

#[test]
fn cjk_text_is_intact() {
    let text = "服务器「web-1」于 14:03 恢复正常，耗时 3 分钟。繁體字與日本語のテキスト。";
    let html = render::markdown_to_html(text);
    assert_eq!(html, format!("<p>{text}</p>\n"));
    assert_eq!(render::plain_text(text), text);
}

#[test]
fn task_list_renders_marks() {
    let html = render::markdown_to_html("- [x] 备份数据库\n- [ ] 切换流量\n");
    assert!(html.contains("<li>☑ 备份数据库</li>"), "{html}");
    assert!(html.contains("<li>☐ 切换流量</li>"), "{html}");
    assert_safe_fragment(&html, "task list");
}

#[test]
fn harmless_raw_html_may_stay() {
    let html = render::markdown_to_html("第一行<br>第二行 <b>重点</b>");
    assert!(html.contains("<br>"), "{html}");
    assert!(html.contains("<b>重点</b>"), "{html}");
}

#[test]
fn summary_of_a_real_push() {
    let md = "## 🚨 磁盘告警\n\n主机 **web-1** 的 `/data` 使用率达到 *93%*，请尽快清理。\n";
    let summary = render::summary(md, render::TEMPLATE_FIELD_MAX_CHARS);
    assert_eq!(summary, "磁盘告警 主机 web-1 的 /da…");
    assert_eq!(summary.chars().count(), render::TEMPLATE_FIELD_MAX_CHARS);
}

#[test]
fn detail_page_embeds_the_rendered_body() {
    let body = render::markdown_to_html("**部署完成**");
    let page = page::detail_page(&PageView {
        title: "部署 & 发布",
        time: "2026-11-21 14:03",
        body_html: &body,
        url: Some("https://ci.example/run/42"),
        site_name: "huixin",
    });
    assert!(page.contains("<div class=\"body\">\n<p><strong>部署完成</strong></p>\n</div>"));
    assert!(page.contains("<title>部署 &amp; 发布</title>"));
    assert!(page.contains("<a class=\"link\" href=\"https://ci.example/run/42\""));
    assert_safe_page(&page, "detail");
}
