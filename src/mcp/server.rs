//! The MCP server's handler: `initialize`, `tools/list` and `tools/call` for the one tool,
//! [`run_python`](super::tool).
//!
//! A call whose arguments are refused ([`ArgumentError`]) or that names another tool is a JSON-RPC
//! error (`-32602`, invalid params) and runs nothing. Every other call is a tool result, whatever
//! the program did: its status says how it ended and `isError` is set unless it is `ok`.
//!
//! Runs go through [`Sandbox::run`] on tokio's blocking threads, at most `max_concurrent` at once
//! (further calls wait for a slot). A run stops (and its container goes) when the client cancels
//! its request, when the connection closes (rmcp drops the call), or when the server is stopping
//! ([`McpServer::stopping`]).

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use tokio::sync::Semaphore;

use super::tool::{self, ArgumentError, TOOL_NAME};
use crate::limits::Limits;
use crate::report::{Outcome, Status};
use crate::runner::job::DEFAULT_ARTIFACT_BYTES;
use crate::runner::{CancelToken, Job, RunIo, Sandbox};

/// What the handler needs; shared by every call of the connection.
pub struct McpServer {
    sandbox: Sandbox,
    /// The server's limits: what a call gets, and the most it may ask for.
    limits: Limits,
    tool: Tool,
    /// One permit per run that may be in progress.
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    /// Cancelled when the server stops: every run in progress or waiting stops.
    stopping: CancelToken,
}

impl McpServer {
    pub fn new(
        sandbox: Sandbox,
        limits: Limits,
        max_concurrent: usize,
        stopping: CancelToken,
    ) -> McpServer {
        let data_science = sandbox.image() == crate::sandbox::DS_IMAGE;
        McpServer {
            tool: tool::definition(&limits, data_science),
            sandbox,
            limits,
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            stopping,
        }
    }

    /// A handle that waits for the runs in progress; see [`RunsInProgress::wait`].
    pub fn runs(&self) -> RunsInProgress {
        RunsInProgress {
            slots: self.slots.clone(),
            count: self.max_concurrent,
        }
    }

    /// Run `job` on a blocking thread once a slot is free. The run stops when `request` is
    /// cancelled, when this future is dropped, or when the server stops.
    async fn run(
        &self,
        job: Job,
        request: &tokio_util::sync::CancellationToken,
    ) -> Result<Outcome, ErrorData> {
        let limits = job.limits;
        let token = CancelToken::new();
        // Dropped with this future (rmcp drops a call whose connection closed): the run stops.
        let _stop_on_drop = CancelOnDrop(token.clone());
        let _stop_with_server = self.stopping.on_cancel({
            let token = token.clone();
            move || token.cancel()
        });
        let permit = tokio::select! {
            permit = self.slots.clone().acquire_owned() => permit.map_err(|_| stopped())?,
            () = request.cancelled() => return Err(cancelled()),
        };
        if self.stopping.is_cancelled() {
            return Ok(Outcome::not_run(
                Status::Interrupted,
                "the server is stopping: nothing was run",
                limits,
            ));
        }
        let sandbox = self.sandbox.clone();
        let run_token = token.clone();
        let mut run = tokio::task::spawn_blocking(move || {
            let io = RunIo {
                artifact_bytes: DEFAULT_ARTIFACT_BYTES,
                ..RunIo::capture()
            };
            let outcome = sandbox.run(job, io, &run_token);
            drop(permit);
            outcome
        });
        let joined = tokio::select! {
            joined = &mut run => joined,
            () = request.cancelled() => {
                token.cancel();
                run.await
            }
        };
        joined.map_err(|error| {
            ErrorData::internal_error(
                format!("the run failed inside safe-exec ({error}): please report it"),
                None,
            )
        })
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("safe-exec", env!("CARGO_PKG_VERSION"))
                    .with_title("safe-exec: run Python in a locked-down sandbox"),
            )
            .with_instructions(format!(
                "Call `{TOOL_NAME}` to run Python code and see its output, exit status and the \
                 files it writes into out/. Every call is a fresh interpreter in a new sandbox \
                 with no network: give each program everything it needs (imports, data through \
                 `files` or `stdin`)."
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![self.tool.clone()]))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        (name == TOOL_NAME).then(|| self.tool.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != TOOL_NAME {
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown tool `{}`: this server has one tool, `{TOOL_NAME}`",
                    crate::sanitize::text(&request.name)
                ),
                None,
            ));
        }
        let job = tool::parse(request.arguments)
            .and_then(|args| tool::job(args, &self.limits))
            .map_err(invalid_arguments)?;
        let outcome = self.run(job, &context.ct).await?;
        Ok(tool::result(outcome).into())
    }
}

/// A refused call: JSON-RPC "invalid params", with the reason (which says what to change).
fn invalid_arguments(error: ArgumentError) -> ErrorData {
    ErrorData::invalid_params(error.to_string(), None)
}

fn cancelled() -> ErrorData {
    ErrorData::internal_error("the call was cancelled before it ran", None)
}

fn stopped() -> ErrorData {
    ErrorData::internal_error("the server is stopping: nothing was run", None)
}

/// Cancels its token when dropped.
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The runs of a server still in progress.
pub struct RunsInProgress {
    slots: Arc<Semaphore>,
    count: usize,
}

impl RunsInProgress {
    /// Wait until no run is in progress (every slot free), at most `within`; whether none is.
    /// Runs waiting for a slot when the server stops never start.
    pub async fn wait(&self, within: std::time::Duration) -> bool {
        let all = u32::try_from(self.count).unwrap_or(u32::MAX);
        matches!(
            tokio::time::timeout(within, self.slots.acquire_many(all)).await,
            Ok(Ok(_))
        )
    }
}
