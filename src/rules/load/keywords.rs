//! Keyword tables: `*.toml` files of `[[reply]]` entries, each conditions plus one fixed reply.

use std::sync::Arc;

use super::{Action, LoadError, Origin, Rule, SourceFile};
use crate::bot::Filter;
use crate::rules::conditions;
use crate::wechat::{Article, Reply};

/// Keys of a keyword-table entry that give its reply.
const REPLY_KEYS: &[&str] = &[
    "text",
    "image",
    "voice",
    "news",
    "transfer_customer_service",
    "success",
];

/// A keyword file: `[[reply]]` entries and nothing else.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(default)]
    reply: Vec<toml::Spanned<toml::Table>>,
}

/// Loads a keyword table: `[[reply]]` entries, each with conditions and one reply.
pub(super) fn load_table(file: &SourceFile, rules: &mut Vec<Rule>) -> Result<(), Vec<LoadError>> {
    let err = |line: Option<usize>, message: String| LoadError {
        file: file.name.clone(),
        line,
        message,
    };
    let table: TableFile = toml::from_str(&file.text).map_err(|e| {
        let line = e.span().map(|s| line_of(&file.text, s.start));
        let message = e.message().trim();
        // Serde's words for the two structural mistakes, in the file's own terms.
        let message = if let Some(rest) = message.strip_prefix("unknown field ") {
            let name = rest.split(',').next().unwrap_or(rest);
            format!("unknown table {name}: a keyword file holds [[reply]] entries only")
        } else if message.contains("expected a sequence") {
            "`reply` must be written [[reply]], one table per entry".to_owned()
        } else {
            message.to_owned()
        };
        vec![err(line, message)]
    })?;
    let mut errors = Vec::new();
    let file_name: Arc<str> = Arc::from(file.name.as_str());
    for entry in &table.reply {
        let line = line_of(&file.text, entry.span().start);
        match table_rule(entry.get_ref()) {
            Ok((filter, conditions, reply)) => rules.push(Rule {
                origin: Origin {
                    file: Arc::clone(&file_name),
                    line,
                },
                filter,
                conditions,
                action: Action::Reply(reply),
            }),
            Err(message) => errors.push(err(Some(line), message)),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn table_rule(entry: &toml::Table) -> Result<(Filter, String, Reply), String> {
    let mut conditions = Vec::new();
    let mut replies = Vec::new();
    for (key, value) in entry {
        if REPLY_KEYS.contains(&key.as_str()) {
            replies.push((key.as_str(), value));
            continue;
        }
        let values = match value {
            toml::Value::String(s) => vec![s.clone()],
            toml::Value::Integer(n) => vec![n.to_string()],
            toml::Value::Array(a) => a
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(n) => Ok(n.to_string()),
                    _ => Err(format!("condition `{key}` takes text or a list of texts")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(format!("condition `{key}` takes text or a list of texts")),
        };
        conditions.push((key.clone(), values));
    }
    let (filter, summary) = conditions::build(&conditions).map_err(|e| {
        if e.starts_with("unknown condition") {
            format!("{e}; or a reply: {}", REPLY_KEYS.join(", "))
        } else {
            e
        }
    })?;
    let [(kind, value)] = replies.as_slice() else {
        return Err(format!(
            "an entry needs exactly one reply ({}); this one has {}",
            REPLY_KEYS.join(", "),
            replies.len()
        ));
    };
    let text = |v: &toml::Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("`{kind}` takes text"))
    };
    let reply = match *kind {
        "text" => {
            let t = text(value)?;
            if t.trim().is_empty() {
                return Err("`text` is empty (use success = true to answer nothing)".into());
            }
            Reply::text(t)
        }
        "image" => Reply::image(text(value)?),
        "voice" => Reply::voice(text(value)?),
        "transfer_customer_service" => match value {
            toml::Value::Boolean(true) => Reply::transfer_customer_service(None),
            toml::Value::String(kf) => Reply::transfer_customer_service(Some(kf.clone())),
            _ => return Err("`transfer_customer_service` takes true or an agent account".into()),
        },
        "success" => Reply::Success,
        "news" => {
            let items = value.as_array().ok_or("`news` takes a list of articles")?;
            let articles = items
                .iter()
                .map(|item| {
                    let t = item
                        .as_table()
                        .ok_or("each article is a table {title, description, url, pic_url}")?;
                    let field = |k: &str| {
                        t.get(k)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    Ok(Article {
                        title: field("title"),
                        description: field("description"),
                        url: field("url"),
                        pic_url: field("pic_url"),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            if articles.is_empty() {
                return Err("`news` needs at least one article".into());
            }
            Reply::News(articles)
        }
        _ => return Err(format!("unknown reply `{kind}`")),
    };
    Ok((filter, summary, reply))
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}
