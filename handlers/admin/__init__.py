"""The admin room (网格通·管理员群): roster import and export, coverage, admins, health, audit."""
