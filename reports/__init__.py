"""The sentiment picture: how sentiment moved over time, as one self-contained HTML page.

``selection`` says which posts it covers, ``sentiment_queries`` reads them (aggregated in the
database), ``picture`` turns the rows into periods, distributions and extreme posts, ``charts`` draws
them as SVG with matplotlib, and ``page`` renders the HTML that ``volfefe report --html`` writes and
the web process serves at ``/report``.
"""
