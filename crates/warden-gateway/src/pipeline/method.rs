//! The methods a client may send after `initialize`, as a type: what each is for the audit
//! trail, which are listings and which carry tool or prompt arguments.

/// A client request method Warden serves (anything else is -32601).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    ToolsList,
    PromptsList,
    ResourcesList,
    ResourceTemplatesList,
    ToolsCall,
    PromptsGet,
    ResourcesRead,
    ResourcesSubscribe,
    ResourcesUnsubscribe,
    CompletionComplete,
    Ping,
    LoggingSetLevel,
    /// The tasks extension: a task's state, answers to its questions, its cancellation.
    TasksGet,
    TasksUpdate,
    TasksCancel,
}

impl Method {
    pub const ALL: [Method; 15] = [
        Method::ToolsList,
        Method::PromptsList,
        Method::ResourcesList,
        Method::ResourceTemplatesList,
        Method::ToolsCall,
        Method::PromptsGet,
        Method::ResourcesRead,
        Method::ResourcesSubscribe,
        Method::ResourcesUnsubscribe,
        Method::CompletionComplete,
        Method::Ping,
        Method::LoggingSetLevel,
        Method::TasksGet,
        Method::TasksUpdate,
        Method::TasksCancel,
    ];

    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::ToolsList => "tools/list",
            Method::PromptsList => "prompts/list",
            Method::ResourcesList => "resources/list",
            Method::ResourceTemplatesList => "resources/templates/list",
            Method::ToolsCall => "tools/call",
            Method::PromptsGet => "prompts/get",
            Method::ResourcesRead => "resources/read",
            Method::ResourcesSubscribe => "resources/subscribe",
            Method::ResourcesUnsubscribe => "resources/unsubscribe",
            Method::CompletionComplete => "completion/complete",
            Method::Ping => "ping",
            Method::LoggingSetLevel => "logging/setLevel",
            Method::TasksGet => "tasks/get",
            Method::TasksUpdate => "tasks/update",
            Method::TasksCancel => "tasks/cancel",
        }
    }

    /// A listing: the server capability it needs and the field that holds its items.
    pub fn listing(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            Method::ToolsList => ("tools", "tools"),
            Method::PromptsList => ("prompts", "prompts"),
            Method::ResourcesList => ("resources", "resources"),
            Method::ResourceTemplatesList => ("resources", "resourceTemplates"),
            _ => return None,
        })
    }

    /// The audit record's kind.
    pub fn audit_kind(self) -> &'static str {
        match self {
            Method::ToolsCall => "call",
            Method::ResourcesRead => "read",
            Method::PromptsGet => "prompt",
            Method::CompletionComplete => "complete",
            Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => "subscribe",
            Method::Ping => "ping",
            Method::LoggingSetLevel => "logging",
            Method::TasksGet | Method::TasksUpdate | Method::TasksCancel => "task",
            Method::ToolsList | Method::PromptsList | Method::ResourcesList | Method::ResourceTemplatesList => "list",
        }
    }

    /// Its `arguments` are a tool's or a prompt's (checked, recorded under the argument policy).
    pub fn has_arguments(self) -> bool {
        matches!(self, Method::ToolsCall | Method::PromptsGet)
    }

    /// A subscription change: its answer is empty, not content for the output stages.
    pub fn is_subscription(self) -> bool {
        matches!(self, Method::ResourcesSubscribe | Method::ResourcesUnsubscribe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Method::ALL {
            assert_eq!(Method::parse(m.as_str()), Some(m));
        }
        assert_eq!(Method::parse("tools/CALL"), None);
        assert_eq!(Method::ResourceTemplatesList.listing(), Some(("resources", "resourceTemplates")));
        assert_eq!(Method::ToolsCall.listing(), None);
    }
}
