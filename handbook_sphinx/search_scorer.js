/* The site search's scorer (conf.py: html_search_scorer), for a reader looking for a symptom
 * or a setting. Sphinx's defaults, plus three boosts: a section whose title matches the query
 * beats a page that merely contains its words; an entry of the runbook (a section or one of
 * its index entries, which handbook_sphinx/search_terms.py places) beats the same match
 * elsewhere; and among full-text hits, a page whose own title holds the query's words beats
 * one that has them in a section heading only (Sphinx scores both alike, and the "Questions
 * from the field" headings put many words in many pages' headings). Checked in a browser by
 * tests/site/test_oncall.py, test_browser.py and test_question_search.py. */
const queryWords = () =>
  (new URLSearchParams(window.location.search).get("q") || "")
    .toLowerCase()
    .split(/\s+/)
    .filter((w) => w.length > 2);

var Scorer = {
  score: (result) => {
    const [docname, title, anchor, _descr, score, _filename, kind] = result;
    let boosted = score;
    if (kind === "title") boosted += 10;
    if (docname === "observability/runbook" && anchor && kind !== "text") boosted += 20;
    if (kind === "text" && title) {
      const own = title.toLowerCase();
      boosted += 2 * queryWords().filter((w) => own.includes(w)).length;
    }
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
