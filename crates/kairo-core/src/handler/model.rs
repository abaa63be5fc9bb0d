//! A checked SORACOM event handler ([`Handler`]): targets, the 20 rule types,
//! actions, and the errors compiling reports ([`super::compile`] builds them).

use std::fmt;

use super::timing::DateConst;

/// Who a handler watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One subscriber (IMSI).
    Imsi(String),
    /// One IoT SIM.
    Sim(String),
    /// Every SIM in a group, each evaluated on its own.
    Group(String),
    /// Every SIM of the operator.
    Operator(String),
}

/// The 20 rule types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum RuleType {
    SubscriberFirstTraffic,
    SubscriberDailyTraffic,
    SubscriberMonthlyTraffic,
    SubscriberCumulativeTraffic,
    SimDailyTotalTraffic,
    SimMonthlyTotalTraffic,
    SimCumulativeTotalTraffic,
    DailyTotalTraffic,
    MonthlyTotalTraffic,
    SubscriberStatusAttribute,
    SimStatusAttribute,
    SubscriberSpeedClassAttribute,
    SimSpeedClassAttribute,
    SubscriberExpired,
    SimExpired,
    SubscriberSessionStatus,
    SubscriberImeiMismatched,
    SimImeiMismatched,
    SimSubscriptionStatus,
    MonthlyCharge,
}

/// Which timing constants a rule type accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timing {
    /// Everything but IMMEDIATELY.
    NotImmediately,
    /// All five.
    Any,
    /// NEVER only.
    NeverOnly,
}

impl RuleType {
    /// Every rule type with its SORACOM name.
    pub const ALL: [(&'static str, RuleType); 20] = [
        (
            "SubscriberFirstTrafficRule",
            RuleType::SubscriberFirstTraffic,
        ),
        (
            "SubscriberDailyTrafficRule",
            RuleType::SubscriberDailyTraffic,
        ),
        (
            "SubscriberMonthlyTrafficRule",
            RuleType::SubscriberMonthlyTraffic,
        ),
        (
            "SubscriberCumulativeTrafficRule",
            RuleType::SubscriberCumulativeTraffic,
        ),
        ("SimDailyTotalTrafficRule", RuleType::SimDailyTotalTraffic),
        (
            "SimMonthlyTotalTrafficRule",
            RuleType::SimMonthlyTotalTraffic,
        ),
        (
            "SimCumulativeTotalTrafficRule",
            RuleType::SimCumulativeTotalTraffic,
        ),
        ("DailyTotalTrafficRule", RuleType::DailyTotalTraffic),
        ("MonthlyTotalTrafficRule", RuleType::MonthlyTotalTraffic),
        (
            "SubscriberStatusAttributeRule",
            RuleType::SubscriberStatusAttribute,
        ),
        ("SimStatusAttributeRule", RuleType::SimStatusAttribute),
        (
            "SubscriberSpeedClassAttributeRule",
            RuleType::SubscriberSpeedClassAttribute,
        ),
        (
            "SimSpeedClassAttributeRule",
            RuleType::SimSpeedClassAttribute,
        ),
        ("SubscriberExpiredRule", RuleType::SubscriberExpired),
        ("SimExpiredRule", RuleType::SimExpired),
        (
            "SubscriberSessionStatusRule",
            RuleType::SubscriberSessionStatus,
        ),
        (
            "SubscriberImeiMismatchedRule",
            RuleType::SubscriberImeiMismatched,
        ),
        ("SimImeiMismatchedRule", RuleType::SimImeiMismatched),
        ("SimSubscriptionStatusRule", RuleType::SimSubscriptionStatus),
        ("MonthlyChargeRule", RuleType::MonthlyCharge),
    ];

    /// The SORACOM name, e.g. `SimSubscriptionStatusRule`.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .expect("every type is listed")
    }

    pub(super) fn timing(self) -> Timing {
        match self {
            RuleType::SubscriberFirstTraffic => Timing::NeverOnly,
            RuleType::SimSubscriptionStatus => Timing::NotImmediately,
            // The rules that compare a traffic counter with a limit.
            kind if kind.needs_traffic_limit() => Timing::NotImmediately,
            _ => Timing::Any,
        }
    }

    /// Whether `runOnceAmongTarget` applies (the Subscriber traffic rules do not support it;
    /// on MonthlyChargeRule it is accepted and has no effect).
    pub(super) fn run_once_supported(self) -> bool {
        use RuleType::*;
        !matches!(
            self,
            SubscriberFirstTraffic
                | SubscriberDailyTraffic
                | SubscriberMonthlyTraffic
                | SubscriberCumulativeTraffic
        )
    }

    pub(super) fn needs_traffic_limit(self) -> bool {
        use RuleType::*;
        matches!(
            self,
            SubscriberDailyTraffic
                | SubscriberMonthlyTraffic
                | SubscriberCumulativeTraffic
                | SimDailyTotalTraffic
                | SimMonthlyTotalTraffic
                | SimCumulativeTotalTraffic
                | DailyTotalTraffic
                | MonthlyTotalTraffic
        )
    }
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleConfig {
    /// The type.
    pub kind: RuleType,
    /// When the rule is evaluated again after firing.
    pub reevaluate: DateConst,
    /// Minutes added to the re-evaluation time.
    pub offset_minutes: i64,
    /// Suppress the rule for the whole target, not just the one subscriber, after it fires.
    pub run_once_among_target: bool,
    /// `limitTotalTrafficMegaByte` (MiB) or `limitTotalAmount`.
    pub limit: Option<i64>,
    /// Status filters.
    pub source_status: Option<String>,
    /// Status filters.
    pub target_status: Option<String>,
    /// Speed class filter.
    pub target_speed_class: Option<String>,
    /// OTA status filter.
    pub target_ota_status: Option<String>,
    /// `Created` or `Deleted`.
    pub session_status: Option<String>,
    /// Require the session to report an IMEI.
    pub has_imei: bool,
}

/// A checked action.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    /// `ChangeSpeedClassAction`.
    ChangeSpeedClass(String),
    /// `ActivationAction`.
    Activation,
    /// `DeactivationAction`.
    Deactivation,
    /// `StandbyAction`.
    Standby,
    /// `SuspendAction`.
    Suspend,
    /// `ImeiLockAction`.
    ImeiLock,
    /// `SendMailAction`.
    SendMail {
        /// Recipient.
        to: String,
        /// Subject template.
        title: String,
        /// Body template.
        message: String,
    },
    /// `SendMailToOperatorAction`.
    SendMailToOperator {
        /// Subject template.
        title: String,
        /// Body template.
        message: String,
    },
    /// `ExecuteWebRequestAction`.
    WebRequest {
        /// URL template.
        url: String,
        /// GET, POST, PUT or DELETE.
        method: String,
        /// Content type.
        content_type: String,
        /// Header templates.
        headers: Vec<(String, String)>,
        /// Body template (POST and PUT only).
        body: Option<String>,
    },
    /// `InvokeAWSLambdaAction`.
    Lambda {
        /// The Lambda API endpoint, e.g. `https://lambda.ap-northeast-1.amazonaws.com`.
        endpoint: String,
        /// The function (with `:version` or `:alias`, if any).
        function_name: String,
        /// Which `[credentials.<id>]` signs the call.
        credentials_id: String,
        /// `parameter1`..`parameter5` templates, by name.
        parameters: Vec<(String, String)>,
    },
}

impl ActionKind {
    /// SORACOM's name for the action type, e.g. `ChangeSpeedClassAction`.
    pub fn soracom_name(&self) -> &'static str {
        match self {
            Self::ChangeSpeedClass(_) => "ChangeSpeedClassAction",
            Self::Activation => "ActivationAction",
            Self::Deactivation => "DeactivationAction",
            Self::Standby => "StandbyAction",
            Self::Suspend => "SuspendAction",
            Self::ImeiLock => "ImeiLockAction",
            Self::SendMail { .. } => "SendMailAction",
            Self::SendMailToOperator { .. } => "SendMailToOperatorAction",
            Self::WebRequest { .. } => "ExecuteWebRequestAction",
            Self::Lambda { .. } => "InvokeAWSLambdaAction",
        }
    }
}

/// An action with its execution time.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerAction {
    /// What to do.
    pub kind: ActionKind,
    /// When.
    pub execute: DateConst,
    /// Minutes after that.
    pub offset_minutes: i64,
}

/// A checked event handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Handler {
    /// `handlerId`, or the name when there is none.
    pub id: String,
    /// `name`.
    pub name: String,
    /// `status == "active"`.
    pub active: bool,
    /// Who it watches.
    pub target: Target,
    /// The rule.
    pub rule: RuleConfig,
    /// The actions, at most five.
    pub actions: Vec<HandlerAction>,
    /// Whether it runs in shadow (from a `NAME.shadow.json` file): its
    /// requests are recorded, never performed, and its state is its own.
    pub shadow: bool,
}

impl Handler {
    /// What its state (suppression times) is kept under: its id, with
    /// `.shadow` in shadow so it never shares state with its live twin.
    pub fn state_id(&self) -> String {
        crate::shadow_id(&self.id, self.shadow).into_owned()
    }
}

/// A constraint a handler breaks: file, handler, JSON path and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// The file it came from.
    pub file: String,
    /// The handler's name or position.
    pub handler: String,
    /// JSON path of the field, e.g. `ruleConfig.properties.inactiveTimeoutOffsetMinutes`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: handler {}: {}: {}",
            self.file, self.handler, self.path, self.message
        )
    }
}

/// Statuses a SIM can have.
pub const STATUSES: [&str; 6] = [
    "ready",
    "active",
    "inactive",
    "standby",
    "suspended",
    "terminated",
];
/// Speed classes SORACOM documents.
pub const SPEED_CLASSES: [&str; 8] = [
    "s1.minimum",
    "s1.slow",
    "s1.standard",
    "s1.fast",
    "s1.4xfast",
    "s1.8xfast",
    "u1.standard",
    "u1.slow",
];
impl crate::sources::Keyed for Handler {
    fn key(&self) -> &str {
        &self.id
    }
}
