//! Replies that missed the callback deadline, delivered as customer-service messages.

use async_trait::async_trait;

use super::{Client, CustomMessage};
use crate::bot::late::LateReplies;
use crate::wechat::{Message, Reply};

/// Sends a late reply to its user through `/cgi-bin/message/custom/send` (allowed within 48
/// hours of the user's last message, which a reply to that message always is).
#[derive(Debug, Clone)]
pub struct CustomerServiceLate {
    client: Client,
}

impl CustomerServiceLate {
    /// Late replies through `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl LateReplies for CustomerServiceLate {
    async fn deliver(&self, message: &Message, reply: Reply) {
        let Some(custom) = CustomMessage::from_reply(message.from.as_str(), &reply) else {
            tracing::warn!(
                openid = %message.from,
                reply = reply.msg_type(),
                "late reply has no customer-service form; not delivered"
            );
            return;
        };
        match self.client.send_custom(&custom).await {
            Ok(()) => tracing::info!(
                openid = %message.from,
                reply = reply.msg_type(),
                "late reply delivered as a customer-service message"
            ),
            Err(e) => tracing::warn!(
                openid = %message.from,
                reply = reply.msg_type(),
                error = %e,
                "late reply could not be delivered"
            ),
        }
    }
}
