"""MedMCQA: four-option questions from Indian medical entrance exams (AIIMS, NEET PG), 21 subjects.

Source: Pal et al. 2022, "MedMCQA: A Large-scale Multi-Subject Multi-Choice Dataset for Medical
domain Question Answering" (CHIL), https://medmcqa.github.io. The schema read is Hugging Face's
`openlifescienceai/medmcqa` (Parquet, or JSON / JSON Lines exported from it): id, question, opa, opb,
opc, opd, cop (index 0-3 of the correct option), and optionally choice_type, exp, subject_name,
topic_name. The original release's JSON Lines count cop from 1 to 4: subtract 1 first (a cop of 4 is
refused with that hint; 1-3 cannot be told apart). Its test split has no answers (cop -1 on the Hub)
and is refused. The prompt is the one of Yao et al. 2024, "Varying Shades of Wrong" (arXiv
2410.11055), which wow follows.

Worked example (BANK[0] as a file would list it; each sample sees the options in its own order,
reasons, is asked EXTRACTION_PROMPT, concludes, and its letter is mapped back to this order):

    Question: Which nerve supplies the motor innervation of the diaphragm?
    Options:
    A. Phrenic nerve
    B. Vagus nerve
    C. Intercostal nerves
    D. Greater splanchnic nerve

    Gold "A". "... The answer is C." extracts to "C", proxy = cosine of "Intercostal nerves" to
    "Phrenic nerve" in all-MiniLM-L6-v2 = 0.50; "B" (vagus) gets 0.60, "D" (splanchnic) 0.58.

Proxy: the embedding proxy of `multiple_choice` (1 for the correct option, else the clipped cosine
similarity of the chosen option's text to the correct one's). Correct means proxy 1.

The generator draws from BANK, 20 hand-written items in MedMCQA's style (its subjects, four options,
one correct), without repeats; the options are shuffled by the seed.
"""
import wow_core.datasets.multiple_choice as mc
# The extraction turn, the per-sample option orders and the scoring are the same for every
# multiple-choice dataset.
from wow_core.datasets.multiple_choice import (  # noqa: F401
    EXTRACTION_PREFILL, EXTRACTION_PROMPT, canonical_answer, is_correct, proxy, sample_prompts)

NAME = "medmcqa"
VERSION = 1  # bump on any change to prompt, extraction or scoring

DIFFICULTIES = {"default": None}  # one pool of questions: MedMCQA has no difficulty levels
LETTERS = "ABCD"
OPTION_FIELDS = ("opa", "opb", "opc", "opd")

# (subject_name, topic_name, question, correct option, three wrong options); facts from standard texts.
BANK = [
    ("Anatomy", "Thorax", "Which nerve supplies the motor innervation of the diaphragm?",
     "Phrenic nerve", "Vagus nerve", "Intercostal nerves", "Greater splanchnic nerve"),
    ("Physiology", "Cardiovascular system", "The normal pacemaker of the heart is the:",
     "Sinoatrial node", "Atrioventricular node", "Bundle of His", "Papillary muscle"),
    ("Biochemistry", "Vitamins", "Scurvy is caused by deficiency of:",
     "Vitamin C", "Vitamin D", "Vitamin B12", "Iodine"),
    ("Pharmacology", "Toxicology", "The antidote for paracetamol poisoning is:",
     "N-acetylcysteine", "Naloxone", "Atropine", "Desferrioxamine"),
    ("Microbiology", "Bacteriology", "The causative organism of tuberculosis is:",
     "Mycobacterium tuberculosis", "Mycobacterium leprae", "Staphylococcus aureus", "Treponema pallidum"),
    ("Pathology", "Haematology", "Reed-Sternberg cells are characteristic of:",
     "Hodgkin lymphoma", "Non-Hodgkin lymphoma", "Multiple myeloma", "Iron deficiency anaemia"),
    ("Physiology", "Endocrinology", "The hormone secreted by the beta cells of the pancreatic islets is:",
     "Insulin", "Glucagon", "Somatostatin", "Aldosterone"),
    ("Anatomy", "Lower limb", "The longest bone of the human body is the:",
     "Femur", "Tibia", "Humerus", "Stapes"),
    ("Pharmacology", "Autonomic nervous system", "The drug of choice for anaphylactic shock is:",
     "Intramuscular adrenaline", "Intravenous hydrocortisone", "Oral antihistamine", "Oral paracetamol"),
    ("Biochemistry", "Vitamins", "Deficiency of thiamine (vitamin B1) causes:",
     "Beriberi", "Pellagra", "Rickets", "Goitre"),
    ("Medicine", "Infectious diseases", "Koplik spots are seen in:",
     "Measles", "Rubella", "Chickenpox", "Tetanus"),
    ("Ophthalmology", "Nutritional eye disease", "Night blindness is an early sign of deficiency of:",
     "Vitamin A", "Vitamin E", "Vitamin C", "Calcium"),
    ("Physiology", "Cardiovascular system", "The normal resting heart rate of an adult, in beats per minute, is:",
     "60 to 100", "100 to 140", "30 to 50", "180 to 220"),
    ("Microbiology", "Bacteriology", "Cholera is caused by:",
     "Vibrio cholerae", "Vibrio parahaemolyticus", "Escherichia coli", "Plasmodium falciparum"),
    ("Anatomy", "Kidney", "The structural and functional unit of the kidney is the:",
     "Nephron", "Glomerulus", "Ureter", "Alveolus"),
    ("Pharmacology", "Toxicology", "The antidote for opioid overdose is:",
     "Naloxone", "Flumazenil", "N-acetylcysteine", "Vitamin K"),
    ("Pathology", "Respiratory system", "The most common type of lung cancer in non-smokers is:",
     "Adenocarcinoma", "Squamous cell carcinoma", "Small cell carcinoma", "Osteosarcoma"),
    ("Biochemistry", "Lipid metabolism", "The rate-limiting enzyme of cholesterol synthesis is:",
     "HMG-CoA reductase", "HMG-CoA synthase", "Acetyl-CoA carboxylase", "Pepsin"),
    ("Dental", "Dental anatomy", "The hardest substance in the human body is:",
     "Enamel", "Dentin", "Cementum", "Cartilage"),
    ("Gynaecology & Obstetrics", "Normal pregnancy",
     "The average duration of pregnancy, counted from the first day of the last menstrual period, is:",
     "280 days", "266 days", "300 days", "180 days"),
]


def _bank_record(k: int, entry: tuple) -> dict:
    """A BANK entry in the Hub's schema (correct option first, as opa)."""
    subject, topic, question, *options = entry
    return {"id": f"wow-medmcqa-{k + 1:02d}", "question": question, **dict(zip(OPTION_FIELDS, options)),
            "cop": 0, "choice_type": "single", "subject_name": subject, "topic_name": topic}


def _item(record: dict, where: str, position: int) -> mc.Item:
    """A MedMCQA record as an item; ValueError naming `where` and the field when it is malformed."""
    options = tuple(mc.text_field(record, where, key) for key in OPTION_FIELDS)
    cop = mc.int_field(record, where, "cop")
    if cop == -1:
        raise ValueError(f"{where}, field 'cop': -1 means no answer (MedMCQA's test split has none)")
    if cop == 4:
        raise ValueError(f"{where}, field 'cop': 4 is past the last option index 3; the original release "
                         "counts 1-4, the Hub's schema 0-3: subtract 1 from every cop")
    return mc.Item(
        id=mc.text_field(record, where, "id"),
        context=mc.text_field(record, where, "question"),
        options=options,
        gold=mc.gold_index(where, "cop", cop, len(options)),
        meta={key: record[key] for key in ("subject_name", "topic_name", "choice_type") if record.get(key)},
    )


# The functions the stages call, made of the parts above.
_DATASET = mc.Dataset(NAME, LETTERS, DIFFICULTIES, _item, mc.render_question,
                      [_bank_record(k, entry) for k, entry in enumerate(BANK)])
generate_questions = _DATASET.generate_questions
load_questions = _DATASET.load_questions
parse_conclusion = _DATASET.parse_conclusion
parse_direct = _DATASET.parse_direct
