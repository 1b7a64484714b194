"""The grid flow: elicitation and alignment of one config as one DAG, both reports published."""
from prefect import flow, get_run_logger

from flows.align import submit_alignment
from flows.artifacts import publish_alignment, publish_elicitation
from flows.elicit import submit_elicitation
from flows.runtime import checked_config, run_name, say_precision, store_access
from flows.units import model_units, report_loads
from wow_core.config import ExperimentConfig
from wow_core.store import Store


@flow(name="grid", flow_run_name=run_name("grid"), validate_parameters=False, log_prints=True)
def grid(config: ExperimentConfig) -> dict:
    """Elicitation report, and the alignment report when `config.alignment` is set: {elicitation, alignment}."""
    config = checked_config(config)
    store = Store(config.store)
    precision = say_precision(config)
    with store_access(config.store):
        units = model_units(config)
        elicitation = submit_elicitation(config, units)
        alignment = submit_alignment(config, elicitation, units) if config.alignment else None
        out = {"elicitation": elicitation.result(), "alignment": alignment.result() if alignment else None}
        publish_elicitation(store, out["elicitation"], config.name, config.report.confidence, precision)
        if out["alignment"]:
            publish_alignment(store, out["alignment"], config.name, precision)
        report_loads(units)
    get_run_logger().info("reports: %s", [r["md"] for r in out.values() if r])
    return out
