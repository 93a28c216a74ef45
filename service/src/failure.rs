//! Every way a request can fail, and how each is answered and counted: the one place that
//! decides, per failure, the REST status, OpenAI's error type, `param` and `code`, the gRPC code
//! and the `candle_errors_total` kind. The transports only put these on the wire.

use axum::http::StatusCode;

use crate::infer::ServiceError;

/// What went wrong, as `candle_errors_total{kind}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The request is malformed or asks for something the service does not accept.
    BadRequest,
    /// The model asked for is not served.
    UnknownModel,
    /// No API key, or one the service does not know.
    Unauthorized,
    /// The body, or one of its texts, is over a limit.
    PayloadTooLarge,
    /// The model's queue is full.
    Overloaded,
    /// The body did not arrive in time, or the request outlived its deadline.
    Timeout,
    /// Models are loading, or the service is draining.
    NotReady,
    /// The engine failed.
    Inference,
}

impl FailureKind {
    /// Every kind: `candle_errors_total` exports each at zero from the start.
    pub const ALL: [FailureKind; 8] = [
        FailureKind::BadRequest,
        FailureKind::UnknownModel,
        FailureKind::Unauthorized,
        FailureKind::PayloadTooLarge,
        FailureKind::Overloaded,
        FailureKind::Timeout,
        FailureKind::NotReady,
        FailureKind::Inference,
    ];

    /// The metric's label value.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::BadRequest => "bad_request",
            FailureKind::UnknownModel => "unknown_model",
            FailureKind::Unauthorized => "unauthorized",
            FailureKind::PayloadTooLarge => "payload_too_large",
            FailureKind::Overloaded => "overloaded",
            FailureKind::Timeout => "timeout",
            FailureKind::NotReady => "not_ready",
            FailureKind::Inference => "inference",
        }
    }

    /// The kind a refusal made before the request reached `infer` is counted under, from the
    /// status it was answered with (axum's body rejections, the handlers' own checks).
    pub fn of_status(status: StatusCode) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => FailureKind::PayloadTooLarge,
            StatusCode::REQUEST_TIMEOUT => FailureKind::Timeout,
            StatusCode::UNAUTHORIZED => FailureKind::Unauthorized,
            _ => FailureKind::BadRequest,
        }
    }
}

/// How one failure is answered on every transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// What it is counted as.
    pub kind: FailureKind,
    /// The REST status (both APIs).
    pub status: StatusCode,
    /// The gRPC code (v1.x's codes, plus NOT_FOUND and RESOURCE_EXHAUSTED).
    pub grpc: tonic::Code,
    /// OpenAI's error type: `invalid_request_error`, `rate_limit_error` or `server_error`.
    pub openai_type: &'static str,
    /// The request field at fault, for OpenAI's `param`.
    pub param: Option<&'static str>,
    /// OpenAI's machine-readable `code`.
    pub code: Option<&'static str>,
}

impl ServiceError {
    /// How this failure is answered and counted.
    pub fn answer(&self) -> Answer {
        use FailureKind as K;
        let (kind, status, grpc, openai_type, param, code) = match self {
            ServiceError::EmptyInput | ServiceError::TooManyTexts(_) => (
                K::BadRequest,
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
                "invalid_request_error",
                Some("input"),
                None,
            ),
            ServiceError::InvalidArgument(_) => (
                K::BadRequest,
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
                "invalid_request_error",
                None,
                None,
            ),
            ServiceError::TextTooLong { .. } => (
                K::PayloadTooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                tonic::Code::InvalidArgument,
                "invalid_request_error",
                Some("input"),
                Some("input_too_long"),
            ),
            ServiceError::UnknownModel { .. } => (
                K::UnknownModel,
                StatusCode::NOT_FOUND,
                tonic::Code::NotFound,
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            ),
            ServiceError::Overloaded(_) => (
                K::Overloaded,
                StatusCode::TOO_MANY_REQUESTS,
                tonic::Code::ResourceExhausted,
                "rate_limit_error",
                None,
                Some("overloaded"),
            ),
            ServiceError::NotReady(_) => (
                K::NotReady,
                StatusCode::SERVICE_UNAVAILABLE,
                tonic::Code::Unavailable,
                "server_error",
                None,
                Some("unavailable"),
            ),
            ServiceError::TimedOut(_) => (
                K::Timeout,
                StatusCode::SERVICE_UNAVAILABLE,
                tonic::Code::Unavailable,
                "server_error",
                None,
                Some("unavailable"),
            ),
            ServiceError::Inference(_) => (
                K::Inference,
                StatusCode::INTERNAL_SERVER_ERROR,
                tonic::Code::Internal,
                "server_error",
                None,
                None,
            ),
        };
        Answer {
            kind,
            status,
            grpc,
            openai_type,
            param,
            code,
        }
    }

    /// The message of the v1 API's plain-text body and of the gRPC status, as v1.x wrote them.
    pub fn legacy_message(&self) -> String {
        match self {
            ServiceError::Inference(reason) => format!("Embedding failed: {reason}"),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_every_kind_is_listed() {
        let mut labels: Vec<&str> = FailureKind::ALL.iter().map(|k| k.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), FailureKind::ALL.len());
    }

    #[test]
    fn each_failure_is_answered_consistently_across_transports() {
        let cases = [
            ServiceError::EmptyInput,
            ServiceError::TooManyTexts(2048),
            ServiceError::TextTooLong {
                index: 0,
                chars: 10,
                max: 5,
            },
            ServiceError::InvalidArgument("dimensions".into()),
            ServiceError::UnknownModel {
                requested: "x".into(),
                served: vec!["y".into()],
            },
            ServiceError::NotReady("loading"),
            ServiceError::Overloaded("full".into()),
            ServiceError::TimedOut("late".into()),
            ServiceError::Inference("nan".into()),
        ];
        for error in cases {
            let answer = error.answer();
            // A server-side failure is a 5xx everywhere and never blames a request field.
            let server_side = answer.status.is_server_error();
            assert_eq!(
                server_side,
                matches!(
                    answer.grpc,
                    tonic::Code::Unavailable | tonic::Code::Internal
                ),
                "{error:?}"
            );
            assert_eq!(
                server_side,
                answer.openai_type == "server_error",
                "{error:?}"
            );
            if server_side {
                assert_eq!(answer.param, None, "{error:?}");
            }
            // Retry-able failures tell OpenAI clients so by their type or code.
            if answer.status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(answer.openai_type, "rate_limit_error");
            }
        }
        assert_eq!(
            ServiceError::Inference("nan".into()).legacy_message(),
            "Embedding failed: nan"
        );
    }
}
