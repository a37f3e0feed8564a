/* qbench: names the nightly under the pointer on the nightly timeline's graphs. asv's own tooltip shows
   "value @ <timeline hash>"; this adds, just below the point, the nightly's label from nightlies.json (night, torch,
   torchvision and torchao builds, qbench commit). It uses flot's "plothover" event and asv's page data
   ($.asv.main_json) only, and hides itself where it finds no nightly (e.g. when the x axis is a parameter). */
$(function () {
  var labels = {};
  $.getJSON("nightlies.json", function (listing) {
    $.each(listing, function (i, nightly) { labels[nightly.hash] = nightly.label; });
  });
  var box = $('<div id="qbench-nightly-label"></div>').css({
    position: "absolute", display: "none", background: "#ffd", border: "1px solid #bbb", padding: "2px 6px",
    "font-size": "12px", "pointer-events": "none", "z-index": 2000, "white-space": "nowrap"
  }).appendTo("body");

  function revision_of(x) {
    var index = $.asv.main_json || {};
    if ((index.revision_to_hash || {})[x] !== undefined) {
      return x;
    }
    var found = null;
    $.each(index.revision_to_date || {}, function (revision, date) {
      if (date === x) { found = revision; }
    });
    return found;
  }

  $(document).on("plothover", "#main-graph", function (event, pos, item) {
    var revision = item ? revision_of(item.datapoint[0]) : null;
    var label = revision === null ? null : labels[$.asv.main_json.revision_to_hash[revision]];
    if (!label) {
      box.hide();
      return;
    }
    box.text(label).show();
    var left = item.pageX + 8, right_edge = $(window).scrollLeft() + $(window).width();
    if (left + box.outerWidth() > right_edge) {
      left = Math.max(0, item.pageX - box.outerWidth() - 8);  /* near the right edge: the label goes left */
    }
    box.css({left: left, top: item.pageY + 12});
  });
});
