//! The small set of error codes every Strata service speaks, and the single place
//! where they become HTTP statuses and gRPC codes (and gRPC codes become them again
//! when a component forwards another's error). Libraries keep their own typed
//! errors and say which [`ErrorCode`] each one is ([`Coded`]); the service edge
//! only turns that code into a status.
//!
//! The gRPC half (tonic's codes and `Status`) is the default feature `grpc`.
//! The crates at the bottom of the dependency graph (`strata-model`,
//! `strata-limits`) go without it: they only need [`Coded`] and [`ErrorCode`],
//! and should not wait for tonic and its transport to compile.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unavailable,
    Timeout,
    Canceled,
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            ErrorCode::BadRequest => S::BAD_REQUEST,
            ErrorCode::Unauthenticated => S::UNAUTHORIZED,
            ErrorCode::Forbidden => S::FORBIDDEN,
            ErrorCode::NotFound => S::NOT_FOUND,
            ErrorCode::TooManyRequests => S::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => S::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout => S::SERVICE_UNAVAILABLE,
            // Prometheus answers a canceled query with 499 (client closed request).
            ErrorCode::Canceled => S::from_u16(499).unwrap_or(S::BAD_REQUEST),
            ErrorCode::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }

    #[cfg(feature = "grpc")]
    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code as C;
        match self {
            ErrorCode::BadRequest => C::InvalidArgument,
            ErrorCode::Unauthenticated => C::Unauthenticated,
            ErrorCode::Forbidden => C::PermissionDenied,
            ErrorCode::NotFound => C::NotFound,
            ErrorCode::TooManyRequests => C::ResourceExhausted,
            ErrorCode::Unavailable => C::Unavailable,
            ErrorCode::Timeout => C::DeadlineExceeded,
            ErrorCode::Canceled => C::Cancelled,
            ErrorCode::Internal => C::Internal,
        }
    }

    #[cfg(feature = "grpc")]
    pub fn from_grpc_code(code: tonic::Code) -> Self {
        use tonic::Code as C;
        match code {
            C::InvalidArgument | C::OutOfRange | C::FailedPrecondition | C::AlreadyExists => {
                ErrorCode::BadRequest
            }
            C::Unauthenticated => ErrorCode::Unauthenticated,
            C::PermissionDenied => ErrorCode::Forbidden,
            C::NotFound => ErrorCode::NotFound,
            C::ResourceExhausted => ErrorCode::TooManyRequests,
            C::Unavailable | C::Aborted => ErrorCode::Unavailable,
            C::DeadlineExceeded => ErrorCode::Timeout,
            C::Cancelled => ErrorCode::Canceled,
            C::Ok | C::Unknown | C::Internal | C::Unimplemented | C::DataLoss => {
                ErrorCode::Internal
            }
        }
    }

    /// Whether the client's request was at fault (4xx), as opposed to us (5xx).
    pub fn is_client_error(self) -> bool {
        self.http_status().is_client_error()
    }
}

/// An error as a service reports it: a code and a message meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
}

/// A library error that knows which [`ErrorCode`] it is. Libraries implement this on
/// their typed errors; the service edge turns any of them into a [`ServiceError`]
/// (and so into an HTTP status or gRPC code) with [`ServiceError::from_coded`], so the
/// mapping from an error to a status is written once, beside the error.
pub trait Coded: fmt::Display {
    fn code(&self) -> ErrorCode;
}

impl Coded for ServiceError {
    fn code(&self) -> ErrorCode {
        self.code
    }
}

impl ServiceError {
    /// The client-facing form of a library error: its own code, its own message.
    pub fn from_coded(error: &(impl Coded + ?Sized)) -> Self {
        ServiceError::new(error.code(), error.to_string())
    }
}

#[cfg(feature = "grpc")]
impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        tonic::Status::new(e.code.grpc_code(), e.message)
    }
}

#[cfg(feature = "grpc")]
impl From<tonic::Status> for ServiceError {
    fn from(s: tonic::Status) -> Self {
        ServiceError::new(ErrorCode::from_grpc_code(s.code()), s.message().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "grpc")]
    #[test]
    fn grpc_round_trip_keeps_the_code() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::Unauthenticated,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::TooManyRequests,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
            ErrorCode::Canceled,
            ErrorCode::Internal,
        ] {
            let status: tonic::Status = ServiceError::new(code, "x").into();
            assert_eq!(ServiceError::from(status).code, code);
        }
    }

    #[test]
    fn a_coded_error_keeps_its_code_and_message() {
        #[derive(Debug)]
        struct Full;
        impl fmt::Display for Full {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the disk is full")
            }
        }
        impl Coded for Full {
            fn code(&self) -> ErrorCode {
                ErrorCode::Unavailable
            }
        }
        let e = ServiceError::from_coded(&Full);
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert_eq!(e.message, "the disk is full");
    }

    #[test]
    fn http_statuses() {
        assert_eq!(ErrorCode::TooManyRequests.http_status(), 429);
        assert_eq!(ErrorCode::Unauthenticated.http_status(), 401);
        assert!(ErrorCode::BadRequest.is_client_error());
        assert!(!ErrorCode::Unavailable.is_client_error());
    }
}
