//! The two shapes of the handler world a component may have been built
//! against, and calling `handle` in either.
//!
//! The `role` enum of `wit/gateway.wit` gained `http` and `timer` after
//! handlers had been built against its first three cases. The package keeps
//! its version (`wasmgate:gateway@0.1.0`): components name their imports
//! with it, and the core modules of the language helpers spell it by hand,
//! so a new version would have unlinked every one of them. What differs is
//! only the type of the `handle` export's `context` parameter, and the
//! component model checks that structurally: a component built before the
//! change exports `handle` with a three-case enum, which the generated
//! bindings (five cases) refuse. So the gateway reads the export's enum when
//! it loads a component ([`HandlerShape::of`]) and calls a handler built
//! before the change with the context type it was built against, for the
//! three roles it knows; dispatch never sends it the other two.

use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentType, Func, InstancePre, Lower,
};
use wasmtime::Store;

use super::host_calls::bindings::wasmgate::gateway::types as wit;
use super::host_calls::bindings::{Handler, HandlerPre};
use super::store::EventState;
use crate::protocol::Role;

/// A handler linked against the world it was built for, ready to
/// instantiate.
#[derive(Clone)]
pub(crate) enum Prepared {
    /// Built against the current world.
    Current(HandlerPre<EventState>),
    /// Built before `http` and `timer` joined the `role` enum.
    WebSocketOnly {
        pre: InstancePre<EventState>,
        handle: ComponentExportIndex,
    },
}

/// An instance of a [`Prepared`] handler.
pub(crate) enum Instance {
    Current(Handler),
    WebSocketOnly(Func),
}

impl Prepared {
    /// Links `pre` as the current world or, failing that, as the world
    /// before the triggers; the error is the current world's.
    pub(crate) fn new(
        pre: InstancePre<EventState>,
        component: &Component,
    ) -> wasmtime::Result<Self> {
        match HandlerPre::new(pre.clone()) {
            Ok(current) => Ok(Self::Current(current)),
            Err(error) => match websocket_only_handle(component) {
                Some(handle) => Ok(Self::WebSocketOnly { pre, handle }),
                None => Err(error),
            },
        }
    }

    /// Whether the handler can be called in `role`.
    pub(crate) fn handles(&self, role: Role) -> bool {
        self.roles().contains(&role)
    }

    /// The roles the handler can be called in.
    pub(crate) fn roles(&self) -> &'static [Role] {
        match self {
            Self::Current(_) => &Role::ALL,
            Self::WebSocketOnly { .. } => &Role::WEBSOCKET,
        }
    }

    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<EventState>,
    ) -> wasmtime::Result<Instance> {
        match self {
            Self::Current(pre) => Ok(Instance::Current(pre.instantiate_async(store).await?)),
            Self::WebSocketOnly { pre, handle } => {
                let instance = pre.instantiate_async(&mut *store).await?;
                let handle = instance
                    .get_func(&mut *store, handle)
                    .ok_or_else(|| wasmtime::format_err!("no export `handle`"))?;
                Ok(Instance::WebSocketOnly(handle))
            }
        }
    }
}

impl Instance {
    /// Calls `handle`. A handler built before the triggers is called with
    /// the context type it knows; `Err` if `context.role` is not one of
    /// its roles (dispatch does not send those).
    pub(crate) async fn handle(
        &self,
        store: &mut Store<EventState>,
        context: &wit::Context,
        event: &str,
    ) -> wasmtime::Result<Result<String, String>> {
        match self {
            Self::Current(handler) => handler.call_handle(store, context, event).await,
            Self::WebSocketOnly(handle) => {
                let role = match context.role {
                    wit::Role::Register => WebSocketRole::Register,
                    wit::Role::Transfer => WebSocketRole::Transfer,
                    wit::Role::Cleanup => WebSocketRole::Cleanup,
                    wit::Role::Http | wit::Role::Timer => wasmtime::bail!(
                        "the handler was built before the {:?} role existed",
                        context.role
                    ),
                };
                let context = WebSocketContext {
                    service: context.service.clone(),
                    role,
                    request_id: context.request_id.clone(),
                    connection_id: context.connection_id.clone(),
                    deadline_ms: context.deadline_ms,
                };
                let typed = handle.typed::<(&WebSocketContext, &str), Answer>(&*store)?;
                let (answer,) = typed.call_async(&mut *store, (&context, event)).await?;
                Ok(answer)
            }
        }
    }
}

/// The `handle` export of `component` if its `context` carries the
/// three-case `role` enum of the world before the triggers.
fn websocket_only_handle(component: &Component) -> Option<ComponentExportIndex> {
    let (ComponentItem::ComponentFunc(handle), index) = component.get_export(None, "handle")?
    else {
        return None;
    };
    let (_, Type::Record(context)) = handle.params().next()? else {
        return None;
    };
    let role = context.fields().find(|field| field.name == "role")?;
    let Type::Enum(role) = role.ty else {
        return None;
    };
    role.names()
        .eq(Role::WEBSOCKET.iter().map(|role| role.as_str()))
        .then_some(index)
}

/// `role` as a handler built before `http` and `timer` knows it.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
enum WebSocketRole {
    #[component(name = "register")]
    Register,
    #[component(name = "transfer")]
    Transfer,
    #[component(name = "cleanup")]
    Cleanup,
}

/// `context` as a handler built before `http` and `timer` knows it: the
/// same record, with the three-case `role`.
#[derive(ComponentType, Lower)]
#[component(record)]
struct WebSocketContext {
    service: String,
    role: WebSocketRole,
    #[component(name = "request-id")]
    request_id: String,
    #[component(name = "connection-id")]
    connection_id: String,
    #[component(name = "deadline-ms")]
    deadline_ms: u64,
}

/// What `handle` returns.
type Answer = (Result<String, String>,);
