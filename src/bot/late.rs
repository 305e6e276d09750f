//! Where a reply goes when it missed WeChat's deadline: the passive answer was already
//! `success`, so the reply has to travel another way, through the customer-service message
//! API (within 48 hours of the user's last message). [`LateReplies`] is that way; until a
//! sender is configured, [`LogLateReplies`] logs what would have been sent.

use async_trait::async_trait;

use crate::wechat::{Message, Reply};

/// Delivers replies that missed the deadline.
#[async_trait]
pub trait LateReplies: Send + Sync + 'static {
    /// Delivers `reply` (never [`Reply::Success`]) to the sender of `message`.
    async fn deliver(&self, message: &Message, reply: Reply);
}

/// Logs late replies: the stand-in while no customer-service sender is configured.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogLateReplies;

#[async_trait]
impl LateReplies for LogLateReplies {
    async fn deliver(&self, message: &Message, reply: Reply) {
        // The reply's content stays out of the log: it may carry a secret (a push key).
        tracing::warn!(
            openid = %message.from,
            reply = reply.msg_type(),
            "late reply not delivered: no customer-service sender is configured"
        );
    }
}
