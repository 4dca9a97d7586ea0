//! MonitorSink: configure, reconfigure, captured data, remove.

use crate::deployer::{deploy_done, two_versions};
use crate::trainer::training_data;
use crate::{Check, Fixture, call};
use mlctl_core::{Health, Stack};

/// Configuring a monitor returns its status; configuring again is idempotent; captured data
/// can be read; remove is idempotent.
pub async fn monitor_configure_remove(stack: &Stack, fx: &Fixture) {
    let c = Check::new("monitor_configure_remove", stack);
    let model = fx.unique("monitor-model");
    let (v1, _) = two_versions(&c, stack, fx, &model).await;
    let endpoint = fx.unique("monitored");
    let status = deploy_done(
        &c,
        stack,
        fx,
        &fx.endpoint_request(&endpoint, "monitored", v1),
        "the watched endpoint",
    )
    .await;
    let baseline = training_data(&c, stack, fx).await;
    let name = fx.unique("monitor");
    let req = fx.monitor_request(&name, "monitor", status, Some(baseline));
    let mon = &stack.monitor;

    let m = call!(
        c,
        "configuring a monitor",
        mon.configure(&fx.ctx, &req).await
    );
    c.ensure(
        m.name == name,
        format!(
            "the monitor status must name the monitor `{name}`, got `{}`",
            m.name
        ),
    );
    c.ensure(
        m.endpoint == endpoint,
        format!("the monitor must watch `{endpoint}`, says `{}`", m.endpoint),
    );
    c.ensure(
        m.schedule == "every 1h",
        format!(
            "the monitor must keep its schedule `every 1h`, says `{}`",
            m.schedule
        ),
    );
    c.ensure(
        !matches!(m.health, Health::Degraded | Health::Failed),
        format!("a new monitor must not start breached, got {:?}", m.health),
    );
    let again = call!(
        c,
        "configuring the same monitor again",
        mon.configure(&fx.ctx, &req).await
    );
    c.ensure(
        again == m,
        format!(
            "configuring the same monitor again must give the same status: {m:?} then {again:?}"
        ),
    );

    let captured = call!(
        c,
        "reading captured data",
        mon.captured(&fx.ctx, &endpoint, 10).await
    );
    c.ensure(
        captured.len() <= 10,
        format!(
            "captured(limit 10) must return at most 10 records, got {}",
            captured.len()
        ),
    );

    call!(c, "removing the monitor", mon.remove(&fx.ctx, &name).await);
    call!(
        c,
        "removing the monitor again (must be idempotent)",
        mon.remove(&fx.ctx, &name).await
    );
    call!(
        c,
        "cleaning up",
        stack.deployer.delete(&fx.ctx, &endpoint).await
    );
    call!(
        c,
        "cleaning up",
        stack.registry.delete_model(&fx.ctx, &model).await
    );
}
