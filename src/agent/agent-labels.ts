/**
 * The label rules, where the agent's command line has always found them; they
 * live in domain/ since the server checks the labels it grants with them too.
 */
export { assertLabels, labelProblem, MAX_LABELS } from "../domain/labels.js";
