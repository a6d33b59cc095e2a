"""SWE task mining (Skywork-SWE): repositories -> task candidates -> install recipes.

``mining``: repo filters, candidate changes from PR metadata or git history, patch/test split,
limits and dedupe, and the Spark job that mines many repositories in parallel.
``recipe``: environment recipes inferred from a repository at a commit, and a cheap precheck.
``validation`` / ``validate``: runtime validation of candidates in the sandbox.
"""
