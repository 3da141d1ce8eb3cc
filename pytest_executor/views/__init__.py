"""Views of a run: the job records and table, live progress, the timeline and the critical path.

:mod:`~pytest_executor.views.report` holds the job records every view reads;
the rest only listen to the hooks the controller replays.
"""
