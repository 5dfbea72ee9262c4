"""Several models read each post: their combined reading (``vote``) and how far they agree
(``agreement``). Pure functions of the readings; ``db.consensus_store`` keeps each content's consensus
in step with its classifications."""
