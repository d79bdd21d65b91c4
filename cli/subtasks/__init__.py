"""An analysis's sub-tasks read from the API, as a timeline and a Gantt chart."""
