// Served as a script: "<" and "&" are code here, not markup.
function greeting(hour) {
  if (hour < 12 && hour >= 0) { return "Good morning & welcome"; }
  return "Good afternoon";
}
