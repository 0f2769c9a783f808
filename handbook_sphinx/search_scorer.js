/* The site search's scorer (conf.py: html_search_scorer), for a reader looking for a symptom
 * or a setting. Sphinx's defaults, plus two boosts: a section whose title matches the query
 * beats a page that merely contains its words, and an entry of the runbook (a section or one
 * of its index entries, which handbook_sphinx/search_terms.py places) beats the same match
 * elsewhere. Checked in a browser by tests/site/test_oncall.py. */
var Scorer = {
  score: (result) => {
    const [docname, _title, anchor, _descr, score, _filename, kind] = result;
    let boosted = score;
    if (kind === "title") boosted += 10;
    if (docname === "observability/runbook" && anchor && kind !== "text") boosted += 20;
    return boosted;
  },
  // Sphinx's defaults (sphinx/themes/basic/static/searchtools.js, Sphinx 9.0).
  objNameMatch: 11,
  objPartialMatch: 6,
  objPrio: { 0: 15, 1: 5, 2: -5 },
  objPrioDefault: 0,
  title: 15,
  partialTitle: 7,
  term: 5,
  partialTerm: 2,
};
