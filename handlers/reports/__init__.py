"""Reports (/report, 报表): the grid's indicators for a month, quarter or year, the annual
assessment of level-2 chiefs and members, the annual work report, their scheduled posting and
the training obligations."""
