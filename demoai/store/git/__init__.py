"""The git side of a repository: the dulwich repository with its refs, commits and trees of
manifests (``repo``), the staging area (``index``), the working tree kept in step with
HEAD all or nothing (``worktree``) and the lineage record of each commit (``lineage``)."""
from demoai.store.git.repo import CONTROL_DIR, LINEAGE_PATH, CommitInfo, Repository

__all__ = ["Repository", "CommitInfo", "CONTROL_DIR", "LINEAGE_PATH"]
