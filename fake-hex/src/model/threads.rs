//! Agent threads and their topics. The fake's agent answers at once (a thread is IDLE as soon as
//! it is created or continued) with a fixed-shape reply built from the prompt: it does not analyse
//! data. A thread is tagged with every workspace topic whose name occurs in one of its prompts.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Author {
    User,
    Assistant,
}

impl Author {
    /// The prefix GetThreadMessages puts before a block's text.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Author::User => "User",
            Author::Assistant => "Assistant",
        }
    }
}

/// One message of a thread.
#[derive(Clone, Debug)]
pub(crate) struct Message {
    pub(crate) seq: u64,
    pub(crate) author: Author,
    pub(crate) text: String,
    pub(crate) created_at: DateTime<Utc>,
}

/// Something a prompt referred to (`attachments`), shown as a thread resource.
#[derive(Clone, Debug)]
pub(crate) struct Resource {
    pub(crate) id: String,
    pub(crate) resource_type: &'static str,
    pub(crate) name: String,
}

/// One agent thread.
#[derive(Clone, Debug)]
pub(crate) struct Thread {
    pub(crate) id: Uuid,
    pub(crate) seq: u64,
    /// The user whose personal token started it; `None` for workspace tokens.
    pub(crate) user_id: Option<Uuid>,
    pub(crate) project_id: Option<Uuid>,
    pub(crate) title: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) messages: Vec<Message>,
    pub(crate) topics: Vec<Uuid>,
    pub(crate) resources: Vec<Resource>,
    pub(crate) muted: bool,
}

impl Thread {
    /// `NOTEBOOK` for project-backed threads, else `THREADS`.
    pub(crate) fn kind(&self) -> &'static str {
        if self.project_id.is_some() {
            "NOTEBOOK"
        } else {
            "THREADS"
        }
    }

    /// The agent's latest answer.
    pub(crate) fn last_reply(&self) -> Option<&Message> {
        self.messages.iter().rev().find(|m| m.author == Author::Assistant)
    }
}

/// A thread topic.
#[derive(Clone, Debug)]
pub(crate) struct Topic {
    pub(crate) id: Uuid,
    pub(crate) name: String,
}

/// The fake agent's answer to a prompt.
pub(crate) fn reply_to(prompt: &str) -> String {
    format!(
        "You asked: \"{}\". This is fake-hex, an in-memory stand-in for Hex: it records the question \
         but does not analyse data.",
        prompt.trim()
    )
}

/// A thread title from its first prompt: the first line, at most 80 characters.
pub(crate) fn title_from(prompt: &str) -> String {
    let line = prompt.trim().lines().next().unwrap_or_default();
    let mut title: String = line.chars().take(80).collect();
    if line.chars().count() > 80 {
        title.push('…');
    }
    title
}
