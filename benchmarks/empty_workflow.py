"""An empty workflow, the baseline `benchmarks/journeys.py` compares journeys against."""

from temporalio import workflow


@workflow.defn(name="bench.empty")
class EmptyWorkflow:
    """Returns at once."""

    @workflow.run
    async def run(self, _: dict) -> None:
        """Nothing."""
