// latentpedia: progressive enhancements only; every page works without JavaScript.
// Arrow keys move to the previous / next latent on a feature page.
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, textarea, select")) return;
  const link = { ArrowLeft: "prev", ArrowRight: "next" }[event.key];
  const target = link && document.getElementById(link);
  if (target) window.location.href = target.getAttribute("href");
});
