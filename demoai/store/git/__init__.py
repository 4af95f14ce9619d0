"""The git side of a repository: the dulwich repository with its refs, commits and trees of
manifests (``repo``), the rules names and paths must meet (``names``), the staging area
(``index``), the working tree kept in step with HEAD all or nothing (``worktree``), the
lineage record of each commit (``lineage``) and the checks of git objects and reachability
that fsck and gc share (``check``).

Nothing here but ``worktree`` reaches the artifact kinds (to write files out); ``repo``
imports neither of them."""
from demoai.store.git.repo import CONTROL_DIR, LINEAGE_PATH, CommitInfo, Repository

__all__ = ["Repository", "CommitInfo", "CONTROL_DIR", "LINEAGE_PATH"]
